// Package grpc_retry is a mayfly stand-in for the v1 retry client interceptor of
// github.com/grpc-ecosystem/go-grpc-middleware. Fulcio uses it only around the Google Cloud
// KMS client, which cannot be reached from a test machine; calls are passed through once.
package grpc_retry

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// CallOption is accepted for API compatibility and has no effect.
type CallOption struct {
	grpc.EmptyCallOption
}

// WithMax is accepted for API compatibility and has no effect.
func WithMax(uint) CallOption { return CallOption{} }

// WithPerRetryTimeout is accepted for API compatibility and has no effect.
func WithPerRetryTimeout(time.Duration) CallOption { return CallOption{} }

// UnaryClientInterceptor invokes the call once.
func UnaryClientInterceptor(...CallOption) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
