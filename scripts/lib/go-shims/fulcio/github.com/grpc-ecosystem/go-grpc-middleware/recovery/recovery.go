// Package grpc_recovery is a mayfly stand-in for the v1 recovery interceptor of
// github.com/grpc-ecosystem/go-grpc-middleware used by Fulcio (see the README of go-shims/fulcio).
package grpc_recovery

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RecoveryHandlerFuncContext turns a recovered panic into the call's error.
type RecoveryHandlerFuncContext func(ctx context.Context, p any) error

// Option configures UnaryServerInterceptor.
type Option func(*options)

type options struct{ handler RecoveryHandlerFuncContext }

// WithRecoveryHandlerContext sets the function that turns a panic into an error.
func WithRecoveryHandlerContext(f RecoveryHandlerFuncContext) Option {
	return func(o *options) { o.handler = f }
}

// UnaryServerInterceptor recovers from a panic in the handler and returns an error instead.
func UnaryServerInterceptor(opts ...Option) grpc.UnaryServerInterceptor {
	o := options{}
	for _, f := range opts {
		f(&o)
	}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				if o.handler != nil {
					err = o.handler(ctx, p)
				} else {
					err = status.Errorf(codes.Internal, "%v", p)
				}
			}
		}()
		return handler(ctx, req)
	}
}
