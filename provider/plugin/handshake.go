package plugin

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/keyfort/keyfort/internal/providerpb/v1"
	"github.com/keyfort/keyfort/provider"
)

// ProtocolVersion is the plugin protocol version this package speaks (keyfort.provider.v1).
const ProtocolVersion = 1

// PluginName is the name under which the provider is dispensed from the plugin.
const PluginName = "identity_secret_material_provider"

// Handshake is the go-plugin handshake: the cookie names the plugin type, so a binary that is not a
// Keyfort provider plugin refuses to run as one, and a Keyfort plugin refuses to run from a shell.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "KEYFORT_PROVIDER_PLUGIN",
	MagicCookieValue: "keyfort.provider.v1.IdentitySecretMaterialProvider",
}

// versionedPlugins lists the protocol versions both sides understand; go-plugin negotiates the highest.
func versionedPlugins(srv *server) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		ProtocolVersion: {PluginName: &grpcPlugin{srv: srv}},
	}
}

// grpcPlugin is the go-plugin glue between the gRPC service and the provider contract.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	srv *server
}

func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterProviderServiceServer(s, p.srv)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &rpcClient{rpc: pb.NewProviderServiceClient(cc), conn: cc}, nil
}

var _ goplugin.GRPCPlugin = (*grpcPlugin)(nil)
var _ provider.IdentitySecretMaterialProvider = (*rpcClient)(nil)
