package dpop

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// GRPCURL is the URL of a gRPC call, its proof's htu: "https://" + authority (":443" dropped) +
// the full method name ("/pkg.Service/Method"), as grpc-go names a call to per-call credentials,
// whether or not the connection uses TLS.
func GRPCURL(authority, fullMethod string) string {
	return "https://" + strings.TrimSuffix(authority, ":443") + fullMethod
}

// GRPCMethod is the HTTP method of every gRPC call, its proof's htm.
const GRPCMethod = "POST"

// Credentials returns per-call credentials that put a proof of k on each call (the dpop header,
// with no access token): for a client's calls to the identity runtime that start, refresh or end a
// session (identityclient does this for its Session). With requireTLS, gRPC refuses to send them
// over a connection without transport security.
func (k *Key) Credentials(requireTLS bool) credentials.PerRPCCredentials {
	return proofCredentials{k: k, tls: requireTLS}
}

type proofCredentials struct {
	k   *Key
	tls bool
}

func (c proofCredentials) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	proof, err := c.k.GRPCProof(ctx, uri, "")
	if err != nil {
		return nil, err
	}
	return map[string]string{Header: proof}, nil
}

func (c proofCredentials) RequireTransportSecurity() bool { return c.tls }

// GRPCProof is the proof of k for the gRPC call of ctx, whose per-call credentials received uri
// (credentials.PerRPCCredentials.GetRequestMetadata's arguments: "https://authority/pkg.Service"),
// carrying accessToken ("" for none).
func (k *Key) GRPCProof(ctx context.Context, uri []string, accessToken string) (string, error) {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	if !ok || len(uri) == 0 {
		return "", errors.New("dpop: a gRPC proof needs the call's request info and URI (per-call credentials' arguments)")
	}
	// uri is the service's URL; the call's is the authority's with the full method.
	authority := strings.TrimPrefix(uri[0], "https://")
	if i := strings.IndexByte(authority, '/'); i >= 0 {
		authority = authority[:i]
	}
	callURL := GRPCURL(authority, ri.Method)
	nonce := k.Nonce(callURL)
	if slot, ok := ctx.Value(slotKey{}).(*callSlot); ok {
		slot.set(callURL, nonce)
	}
	return k.proofAt(GRPCMethod, callURL, accessToken, nonce, time.Now())
}

// IncomingGRPC returns what a server checks a gRPC call's proof against: the values of the call's
// dpop header (ctx's incoming metadata) and the call's URL, GRPCURL of its :authority and
// fullMethod.
func IncomingGRPC(ctx context.Context, fullMethod string) (proofs []string, callURL string) {
	var authority string
	if a := metadata.ValueFromIncomingContext(ctx, ":authority"); len(a) == 1 {
		authority = a[0]
	}
	return metadata.ValueFromIncomingContext(ctx, Header), GRPCURL(authority, fullMethod)
}
