// Package grpc_middleware is a mayfly stand-in for the v1 API of
// github.com/grpc-ecosystem/go-grpc-middleware used by Fulcio (see ../../../README.md).
package grpc_middleware

import (
	"context"

	"google.golang.org/grpc"
)

// ChainUnaryServer runs the interceptors in order, the first outermost.
func ChainUnaryServer(interceptors ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		next := handler
		for i := len(interceptors) - 1; i >= 0; i-- {
			ic, h := interceptors[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, h) }
		}
		return next(ctx, req)
	}
}
