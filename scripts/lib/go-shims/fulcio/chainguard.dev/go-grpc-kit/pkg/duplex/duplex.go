// Package duplex is a mayfly stand-in for chainguard.dev/go-grpc-kit/pkg/duplex (not
// packaged in Debian). Fulcio uses it only when --port equals --grpc-port (HTTP and gRPC on
// one port); this stand-in refuses to serve in that mode: run Fulcio with two ports.
package duplex

import (
	"context"
	"errors"
	"net"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
)

// Duplex holds the gRPC server Fulcio registers its services on.
type Duplex struct {
	Server *grpc.Server
}

// New collects the grpc.ServerOption values among opts; other options are ignored.
func New(_ int, opts ...any) *Duplex {
	var sopts []grpc.ServerOption
	for _, o := range opts {
		if so, ok := o.(grpc.ServerOption); ok {
			sopts = append(sopts, so)
		}
	}
	return &Duplex{Server: grpc.NewServer(sopts...)}
}

// RegisterHandler does nothing (no HTTP gateway in this stand-in).
func (*Duplex) RegisterHandler(context.Context, func(context.Context, *runtime.ServeMux, string, []grpc.DialOption) error) error {
	return nil
}

// RegisterListenAndServeMetrics does nothing.
func (*Duplex) RegisterListenAndServeMetrics(int, bool) {}

// Serve refuses: this build has no single-port (duplex) mode.
func (*Duplex) Serve(context.Context, net.Listener) error {
	return errors.New("single-port (duplex) mode is not available in this Fulcio build: give --port and --grpc-port different values")
}
