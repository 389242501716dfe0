package plugin

import (
	"google.golang.org/grpc"
)

// flowWindow is the HTTP/2 flow-control window of the host–plugin connection, per stream and per
// connection. Setting it turns off grpc-go's bandwidth-delay-product estimator, which otherwise
// answers received data with PING frames: on a local socket carrying small request–response calls
// those pings are extra wake-ups of both processes for nothing (a socket has no bandwidth-delay
// product to discover). 1 MiB is well above any message the protocol carries.
const flowWindow = 1 << 20

// dialOptions are the host side's gRPC options for a plugin connection.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
	}
}

// newGRPCServer builds the plugin side's gRPC server with go-plugin's options and the same window.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts,
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
	)...)
}
