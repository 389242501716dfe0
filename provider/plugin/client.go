package plugin

import (
	"context"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/keyfort/keyfort/internal/providerpb/v1"
	"github.com/keyfort/keyfort/provider"
)

// rpcClient is the host side of one connection to a plugin: it speaks the protocol and decodes errors,
// and knows nothing of processes (that is [Process]'s job).
type rpcClient struct {
	rpc  pb.ProviderServiceClient
	conn *grpc.ClientConn
	caps map[pb.Capability]bool
}

// alive asks the plugin's gRPC server, not its provider, whether it answers: go-plugin serves the
// standard health service in every plugin. A slow backend does not fail it; a frozen or wedged
// process does.
func (c *rpcClient) alive(ctx context.Context) error {
	_, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "plugin"})
	return err
}

func (c *rpcClient) configure(ctx context.Context, settings provider.Settings) error {
	resp, err := c.rpc.Configure(ctx, &pb.ConfigureRequest{Name: settings.Name, SettingsJson: settings.JSON()})
	if err != nil {
		return err
	}
	c.caps = make(map[pb.Capability]bool, len(resp.GetCapabilities()))
	for _, cp := range resp.GetCapabilities() {
		c.caps[cp] = true
	}
	return nil
}

func (c *rpcClient) SigningKeys(ctx context.Context, name string) (provider.KeySet, error) {
	resp, err := c.rpc.SigningKeys(ctx, &pb.SigningKeysRequest{Name: name})
	if err != nil {
		return provider.KeySet{}, err
	}
	return keySetIn(resp.GetKeySet()), nil
}

func (c *rpcClient) Secret(ctx context.Context, name string) (provider.Secret, error) {
	resp, err := c.rpc.Secret(ctx, &pb.SecretRequest{Name: name})
	if err != nil {
		return provider.Secret{}, err
	}
	return provider.Secret{Name: resp.GetName(), Version: resp.GetVersion(),
		Value: provider.NewSensitive(resp.GetValue()), CreatedAt: tsIn(resp.GetCreatedAt())}, nil
}

func (c *rpcClient) Credentials(ctx context.Context, req provider.CredentialRequest) (provider.Credentials, error) {
	resp, err := c.rpc.Credentials(ctx, &pb.CredentialsRequest{Role: req.Role, Identity: req.Identity.Reveal()})
	if err != nil {
		return provider.Credentials{}, err
	}
	return credentialsIn(resp), nil
}

func (c *rpcClient) Renew(ctx context.Context, lease provider.Lease) (provider.Lease, error) {
	resp, err := c.rpc.Renew(ctx, &pb.RenewRequest{Lease: leaseOut(lease)})
	if err != nil {
		return provider.Lease{}, err
	}
	return leaseIn(resp.GetLease()), nil
}

func (c *rpcClient) Revoke(ctx context.Context, lease provider.Lease) error {
	_, err := c.rpc.Revoke(ctx, &pb.RevokeRequest{Lease: leaseOut(lease)})
	return err
}

func (c *rpcClient) Sign(ctx context.Context, name, kid string, payload []byte) ([]byte, error) {
	resp, err := c.rpc.Sign(ctx, &pb.SignRequest{Name: name, KeyId: kid, Payload: payload})
	if err != nil {
		return nil, err
	}
	return resp.GetSignature(), nil
}

func (c *rpcClient) Health(ctx context.Context) error {
	_, err := c.rpc.Health(ctx, &pb.HealthRequest{})
	return err
}

func (c *rpcClient) RotateSigningKey(ctx context.Context, name string) (provider.KeySet, error) {
	resp, err := c.rpc.RotateSigningKey(ctx, &pb.SigningKeysRequest{Name: name})
	if err != nil {
		return provider.KeySet{}, err
	}
	return keySetIn(resp.GetKeySet()), nil
}

// Close asks the plugin to close its provider.
func (c *rpcClient) Close() error { return c.closeWithin(context.Background()) }

// closeWithin asks the plugin to close its provider, waiting at most as long as ctx allows.
func (c *rpcClient) closeWithin(ctx context.Context) error {
	_, err := c.rpc.Close(ctx, &pb.CloseRequest{})
	return err
}

// watch opens the provider's change stream and calls fn for each change until the stream ends.
func (c *rpcClient) watch(ctx context.Context, fn func(provider.Change)) error {
	stream, err := c.rpc.Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		return err
	}
	for {
		ch, err := stream.Recv()
		if err != nil {
			return err
		}
		fn(provider.Change{Name: ch.GetName()})
	}
}
