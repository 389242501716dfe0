package plugin

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/keyfort/keyfort/internal/providerpb/v1"
	"github.com/keyfort/keyfort/provider"
)

func tsOut(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tsIn(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func keySetOut(ks provider.KeySet) *pb.KeySet {
	out := &pb.KeySet{Name: ks.Name, ActiveId: ks.ActiveID, Keys: make([]*pb.Key, len(ks.Keys))}
	for i, k := range ks.Keys {
		out.Keys[i] = &pb.Key{
			Id: k.ID, Algorithm: string(k.Algorithm), Version: k.Version,
			NotBefore: tsOut(k.NotBefore), NotAfter: tsOut(k.NotAfter),
			Private: k.Private.Reveal(), Public: k.Public,
		}
	}
	return out
}

func keySetIn(ks *pb.KeySet) provider.KeySet {
	out := provider.KeySet{Name: ks.GetName(), ActiveID: ks.GetActiveId(), Keys: make([]provider.Key, len(ks.GetKeys()))}
	for i, k := range ks.GetKeys() {
		out.Keys[i] = provider.Key{
			ID: k.GetId(), Algorithm: provider.Algorithm(k.GetAlgorithm()), Version: k.GetVersion(),
			NotBefore: tsIn(k.GetNotBefore()), NotAfter: tsIn(k.GetNotAfter()),
			Private: provider.NewSensitive(k.GetPrivate()), Public: k.GetPublic(),
		}
	}
	return out
}

func leaseOut(l provider.Lease) *pb.Lease {
	if l.IsZero() {
		return nil
	}
	return &pb.Lease{Id: l.ID, Ttl: durationpb.New(l.TTL), IssuedAt: tsOut(l.IssuedAt), Renewable: l.Renewable}
}

func leaseIn(l *pb.Lease) provider.Lease {
	if l == nil {
		return provider.Lease{}
	}
	var ttl time.Duration
	if l.GetTtl() != nil {
		ttl = l.GetTtl().AsDuration()
	}
	return provider.Lease{ID: l.GetId(), TTL: ttl, IssuedAt: tsIn(l.GetIssuedAt()), Renewable: l.GetRenewable()}
}

func credentialsOut(c provider.Credentials) *pb.CredentialsResponse {
	out := &pb.CredentialsResponse{
		Role: c.Role, Username: c.Username, Password: c.Password.Reveal(), Token: c.Token.Reveal(),
		Lease: leaseOut(c.Lease),
	}
	if len(c.Extra) > 0 {
		out.Extra = make(map[string][]byte, len(c.Extra))
		for k, v := range c.Extra {
			out.Extra[k] = v.Reveal()
		}
	}
	return out
}

func credentialsIn(c *pb.CredentialsResponse) provider.Credentials {
	out := provider.Credentials{
		Role: c.GetRole(), Username: c.GetUsername(),
		Password: provider.NewSensitive(c.GetPassword()), Token: provider.NewSensitive(c.GetToken()),
		Lease: leaseIn(c.GetLease()),
	}
	if len(c.GetExtra()) > 0 {
		out.Extra = make(map[string]provider.Sensitive, len(c.GetExtra()))
		for k, v := range c.GetExtra() {
			out.Extra[k] = provider.NewSensitive(v)
		}
	}
	return out
}
