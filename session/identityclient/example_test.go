package identityclient_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/identityclient"
)

// A backend-for-frontend starts a session with the user's ID token and calls a guarded service with
// it: every call carries a valid access token, refreshed ahead of its expiry.
func ExampleStart() {
	ctx := context.Background()
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13}) // with the client certificate, over mutual TLS
	runtimeConn, err := grpc.NewClient("keyfort-runtime:9090", grpc.WithTransportCredentials(creds))
	if err != nil {
		log.Fatal(err)
	}
	defer runtimeConn.Close()
	idToken := "eyJ…" // from the user's login at the identity provider
	sess, err := identityclient.Start(ctx, identityclient.Config{
		Runtime:  pb.NewIdentityRuntimeServiceClient(runtimeConn),
		OnTokens: func(t *pb.SessionTokens) { /* keep them, as secrets, to Resume after a restart */ },
	}, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: idToken})
	if err != nil {
		log.Fatal(err)
	}
	defer sess.End(ctx) // logout

	orders, err := grpc.NewClient("orders:443", grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(sess))
	if err != nil {
		log.Fatal(err)
	}
	defer orders.Close()
	// ... calls on orders carry the session's access token
}

// A client without a certificate (a CLI, an app's backend outside the mesh) binds its session to a
// DPoP key it holds: a stolen token is useless without the key. DialOptions adds, beside the
// session's credentials, the interceptors that follow services requiring DPoP nonces.
func ExampleSession_DialOptions() {
	ctx := context.Background()
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13})
	runtimeConn, err := grpc.NewClient("keyfort-runtime:9090", grpc.WithTransportCredentials(creds))
	if err != nil {
		log.Fatal(err)
	}
	defer runtimeConn.Close()
	key, err := dpop.GenerateKey() // keep it with the session's tokens to Resume after a restart
	if err != nil {
		log.Fatal(err)
	}
	sess, err := identityclient.Start(ctx, identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(runtimeConn), DPoP: key},
		&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: "eyJ…"})
	if errors.Is(err, identityclient.ErrBinding) {
		log.Fatal("the runtime does not bind sessions to DPoP keys: ", err)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer sess.End(ctx)

	orders, err := grpc.NewClient("orders:443", append(sess.DialOptions(), grpc.WithTransportCredentials(creds))...)
	if err != nil {
		log.Fatal(err)
	}
	defer orders.Close()
	// ... calls on orders carry the access token and a fresh proof of the key
}
