package plugin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/keyfort/keyfort/internal/providerpb/v1"
	"github.com/keyfort/keyfort/provider/plugin"
)

// TestPluginServesOnlyItsHost: a plugin process serves key material to the host that launched it
// and to nobody else on the machine. go-plugin's AutoMTLS gives each launch a fresh client
// certificate that the plugin alone trusts, so another process that finds the plugin's socket,
// whether it speaks plaintext, TLS with no certificate, or TLS with a certificate of its own, gets
// nothing. (Without AutoMTLS the plaintext call below is served.)
func TestPluginServesOnlyItsHost(t *testing.T) {
	p := launchMemory(t, plugin.Config{})
	ctx := context.Background()
	if _, err := p.SigningKeys(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	addr := plugin.PluginAddr(p)
	if addr == nil {
		t.Fatal("no plugin address")
	}
	target := "passthrough:///" + addr.String()
	if addr.Network() == "unix" {
		target = "unix://" + addr.String()
	}
	own := selfSigned(t)
	for name, creds := range map[string]credentials.TransportCredentials{
		"plaintext":          insecure.NewCredentials(),
		"tls-no-certificate": credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}),
		"tls-own-certificate": credentials.NewTLS(&tls.Config{
			InsecureSkipVerify: true, Certificates: []tls.Certificate{own},
		}),
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			resp, err := pb.NewProviderServiceClient(conn).SigningKeys(cctx, &pb.SigningKeysRequest{Name: "signing"})
			if err == nil {
				t.Fatalf("served %d keys to a stranger", len(resp.GetKeySet().GetKeys()))
			}
			if strings.Contains(err.Error(), "PRIVATE") {
				t.Errorf("error carries key material: %v", err)
			}
		})
	}
	// The host's own connection is unaffected.
	if _, err := p.SigningKeys(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
