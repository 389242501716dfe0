package grpcauth_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/sessiontest"
)

func TestForwardedClientCert(t *testing.T) {
	const gw = "spiffe://cluster.local/ns/prod/sa/gateway"
	for name, tc := range map[string]struct {
		values []string
		want   string
	}{
		"Envoy's SANITIZE_SET":                  {[]string{`By=spiffe://cluster.local/ns/prod/sa/kv;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="CN=gateway,O=Acme";URI=` + gw}, gw},
		"the last element, the nearest proxy's": {[]string{`By=spiffe://a/x;URI=spiffe://a/edge,By=spiffe://a/kv;URI=` + gw}, gw},
		"the first URI SAN":                     {[]string{`URI=` + gw + `;URI=spiffe://a/other;DNS=gateway.local`}, gw},
		"a quoted URI":                          {[]string{`Hash=x;URI="` + gw + `"`}, gw},
		"the subject without a URI SAN":         {[]string{`Hash=x;Subject="CN=gateway,O=Acme";DNS=gateway.local`}, "CN=gateway,O=Acme"},
		"an escaped quote in the subject":       {[]string{`Subject="CN=ga\"te"`}, `CN=ga"te`},
		"neither":                               {[]string{`Hash=x;DNS=gateway.local`}, ""},
		"no header":                             {nil, ""},
		"two headers":                           {[]string{`URI=` + gw, `URI=spiffe://a/other`}, ""},
		"a quote left open":                     {[]string{`Subject="CN=gateway;URI=` + gw}, ""},
		"a pair without a value":                {[]string{`Hash;URI=` + gw}, ""},
		"a stray quote":                         {[]string{`URI=spiffe://a"b`}, ""},
		"a trailing escape":                     {[]string{`Subject="CN=a\`}, ""},
	} {
		md := metadata.MD{}
		if tc.values != nil {
			md[grpcauth.ForwardedClientCertHeader] = tc.values
		}
		if got := grpcauth.ForwardedClientCert(context.Background(), md); got != tc.want {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
}

// TestBoundAccessTokensBehindAProxy: a server behind a sidecar that terminates mutual TLS
// (plaintext from the proxy, the client's certificate in x-forwarded-client-cert) serves a bound
// token to the client the header names (Config.ClientIdentity = ForwardedClientCert) and refuses it
// to another or to a call without the header, with the tap handle and without; a bearer token is
// anyone's.
func TestBoundAccessTokensBehindAProxy(t *testing.T) {
	const gateway, batch = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch"
	m, startFor := sessiontest.BoundManager(t)
	eachWiring(t, func(t *testing.T, w wiring) {
		cache, err := session.NewCache(session.CacheConfig{Authenticator: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cache.Close() })
		addr := listenGuarded(t, w, grpcauth.Config{Sessions: cache, ClientIdentity: grpcauth.ForwardedClientCert})
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		client := healthpb.NewHealthClient(cc)
		call := func(tok string, xfcc ...string) error {
			md := []string{"authorization", "Bearer " + tok}
			for _, v := range xfcc {
				md = append(md, grpcauth.ForwardedClientCertHeader, v)
			}
			_, err := client.Check(metadata.AppendToOutgoingContext(context.Background(), md...), &healthpb.HealthCheckRequest{})
			return err
		}
		bound, bearer := startFor(gateway), startFor("")
		for round := range 2 { // a miss, then hits
			if err := call(bound, "By=spiffe://keyfort.test/ns/prod/sa/kv;URI="+gateway); err != nil {
				t.Errorf("round %d: the bound client, through the proxy: %v", round, err)
			}
			for what, xfcc := range map[string][]string{
				"another client": {"By=spiffe://keyfort.test/ns/prod/sa/kv;URI=" + batch},
				"no header":      nil,
				"two headers":    {"URI=" + gateway, "URI=" + gateway},
			} {
				if err := call(bound, xfcc...); status.Code(err) != codes.Unauthenticated {
					t.Errorf("round %d: a bound token, %s: got %v, want Unauthenticated", round, what, err)
				}
			}
		}
		if err := call(bearer); err != nil {
			t.Errorf("a token bound to no client, without the header: %v", err)
		}
	})
}

// FuzzForwardedClientCert: any header parses without a panic, and a URI written the way Envoy
// writes values (quoted, with '"' and '\' escaped) after another proxy's element comes back as it
// was.
func FuzzForwardedClientCert(f *testing.F) {
	for _, seed := range []string{"spiffe://cluster.local/ns/prod/sa/gateway", `CN=a,"b";c\d`, "", " x ", "é\x00"} {
		f.Add(seed, `By=spiffe://a/x;URI=spiffe://a/edge`)
	}
	f.Fuzz(func(t *testing.T, uri, header string) {
		_ = grpcauth.ForwardedClientCert(context.Background(), metadata.MD{grpcauth.ForwardedClientCertHeader: {header}})
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(uri) + `"`
		md := metadata.MD{grpcauth.ForwardedClientCertHeader: {`By=spiffe://a/edge;URI=spiffe://a/x,Hash=ab;URI=` + quoted}}
		want := uri
		if strings.TrimSpace(uri) != uri { // not what a certificate's URI looks like; the parser trims around values
			return
		}
		if got := grpcauth.ForwardedClientCert(context.Background(), md); got != want {
			t.Errorf("URI %q, written %s: got %q", uri, quoted, got)
		}
	})
}
