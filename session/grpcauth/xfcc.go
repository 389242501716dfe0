package grpcauth

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/keyfort/keyfort/session/internal/guardrules"
)

// ForwardedClientCertHeader is the header in which Envoy (and Istio's sidecars) forward the
// certificate details of the client whose mutual TLS they terminated.
const ForwardedClientCertHeader = guardrules.ForwardedClientCertHeader

// ForwardedClientCert is a Config.ClientIdentity for servers behind Envoy: the identity of the
// client certificate in the x-forwarded-client-cert header — its URI SAN (a SPIFFE ID), else its
// Subject, as session.ClientIdentity names a certificate — from the header's last element, the one
// the nearest proxy added. Configure that proxy to set the header from the connection alone
// (forward_client_cert_details: SANITIZE_SET, Istio's default for sidecars), so that no caller can
// send one of its own. No header, several, or one that does not parse name no one: a bound token
// is then refused. The proxy must be the server's only way in (see Config.ClientIdentity).
func ForwardedClientCert(_ context.Context, md metadata.MD) string {
	return guardrules.ForwardedClientCert(md[ForwardedClientCertHeader])
}
