package dpop

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// slotKey keys a call's callSlot in its context.
type slotKey struct{}

// callSlot is where GRPCProof notes, for Key.Call and the interceptors, the URL it made a call's
// proof for and the nonce the proof carried.
type callSlot struct {
	mu         sync.Mutex
	url, nonce string
}

func (s *callSlot) set(url, nonce string) {
	s.mu.Lock()
	s.url, s.nonce = url, nonce
	s.mu.Unlock()
}

func (s *callSlot) get() (url, nonce string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url, s.nonce
}

// learn records the nonce a server sent with a call whose proof k made (slot), in the call's
// response header or trailer (NonceHeader). It reports whether the proof's nonce was not that one:
// a proof made now would carry a different one.
func (k *Key) learn(slot *callSlot, mds ...metadata.MD) bool {
	url, used := slot.get()
	if url == "" { // no proof of k went with the call
		return false
	}
	for _, md := range mds {
		if v := md.Get(NonceHeader); len(v) > 0 {
			n := v[len(v)-1]
			if k.SetNonce(url, n) || n == k.Nonce(url) {
				return n != used
			}
		}
	}
	return false
}

// Call makes a unary gRPC call whose proof k makes (its Credentials, or per-call credentials that
// call GRPCProof, as identityclient's Session does), with nonces (RFC 9449 §8, §9): it records the
// nonce the server sends with the answer (NonceHeader in its header or trailer), and when the
// server refused the call for want of a current nonce (codes.Unauthenticated, message UseNonce,
// with a nonce other than the proof's), it calls once more with a proof that carries the new one. The server refused
// that first call before running it, so calling again is safe whatever the method does. invoke
// makes the call with the context and options it is given (added to its own).
func (k *Key) Call(ctx context.Context, invoke func(ctx context.Context, opts ...grpc.CallOption) error) error {
	for attempt := 0; ; attempt++ {
		slot := &callSlot{}
		var header, trailer metadata.MD
		err := invoke(context.WithValue(ctx, slotKey{}, slot), grpc.Header(&header), grpc.Trailer(&trailer))
		renewed := k.learn(slot, trailer, header)
		if err == nil || attempt > 0 || !renewed || !IsUseNonce(err) {
			return err
		}
	}
}

// IsUseNonce reports whether err is a refusal for want of a current nonce (codes.Unauthenticated
// with the message UseNonce, as Keyfort's servers refuse), not another refusal that happens to
// come with a nonce (the runtime names its nonce in every answer to a proof).
func IsUseNonce(err error) bool {
	st, _ := status.FromError(err)
	return st.Code() == codes.Unauthenticated && st.Message() == UseNonce
}

// UnaryClientInterceptor is Call for every unary call of a connection: add it to a connection
// whose calls carry proofs of k (grpc.WithChainUnaryInterceptor) when a server may require nonces.
func (k *Key) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return k.Call(ctx, func(ctx context.Context, extra ...grpc.CallOption) error {
			return invoker(ctx, method, req, reply, cc, append(opts[:len(opts):len(opts)], extra...)...)
		})
	}
}

// StreamClientInterceptor records the nonces servers send on streams whose proofs k makes (in
// the stream's header or trailer), for the next call's proof. A stream refused for want of a nonce
// is not opened again (its messages may have been sent): the caller sees codes.Unauthenticated,
// and opening the stream again sends a proof with the new nonce.
func (k *Key) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		slot := &callSlot{}
		cs, err := streamer(context.WithValue(ctx, slotKey{}, slot), desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &learningStream{ClientStream: cs, k: k, slot: slot}, nil
	}
}

// learningStream is a client stream that records the nonce in its header and trailer.
type learningStream struct {
	grpc.ClientStream
	k      *Key
	slot   *callSlot
	header bool // its header was read
}

func (s *learningStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case err != nil:
		s.k.learn(s.slot, s.ClientStream.Trailer())
	case !s.header:
		s.header = true
		if h, herr := s.ClientStream.Header(); herr == nil {
			s.k.learn(s.slot, h)
		}
	}
	return err
}
