// Package middleware is a mayfly stand-in for the request-ID interceptor of
// goa.design/goa/v3/grpc/middleware used by Fulcio (goa is not packaged in Debian).
package middleware

import (
	"context"
	"crypto/rand"
	"encoding/base64"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// RequestIDMetadataKey is the incoming-metadata key that carries the request ID.
const RequestIDMetadataKey = "request-id"

// RequestIDOption configures UnaryRequestID.
type RequestIDOption func(*requestIDOptions) *requestIDOptions

type requestIDOptions struct {
	useXRequestID bool
	limit         int
}

// UseXRequestIDMetadataOption takes the caller's "x-request-id" metadata as the request ID.
func UseXRequestIDMetadataOption(f bool) RequestIDOption {
	return func(o *requestIDOptions) *requestIDOptions { o.useXRequestID = f; return o }
}

// XRequestMetadataLimitOption truncates a caller's request ID to limit bytes.
func XRequestMetadataLimitOption(limit int) RequestIDOption {
	return func(o *requestIDOptions) *requestIDOptions { o.limit = limit; return o }
}

// UnaryRequestID sets RequestIDMetadataKey in the incoming metadata of every call.
func UnaryRequestID(options ...RequestIDOption) grpc.UnaryServerInterceptor {
	o := &requestIDOptions{}
	for _, f := range options {
		o = f(o)
	}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		md = md.Copy()
		id := ""
		if o.useXRequestID {
			if v := md.Get("x-request-id"); len(v) > 0 {
				id = v[0]
				if o.limit > 0 && len(id) > o.limit {
					id = id[:o.limit]
				}
			}
		}
		if id == "" {
			b := make([]byte, 6)
			_, _ = rand.Read(b)
			id = base64.RawURLEncoding.EncodeToString(b)
		}
		md.Set(RequestIDMetadataKey, id)
		return handler(metadata.NewIncomingContext(ctx, md), req)
	}
}
