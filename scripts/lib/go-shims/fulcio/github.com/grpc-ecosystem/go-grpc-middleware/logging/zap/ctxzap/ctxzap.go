// Package ctxzap is a mayfly stand-in for the v1 ctxzap package of
// github.com/grpc-ecosystem/go-grpc-middleware used by Fulcio: a zap logger carried in a context.
package ctxzap

import (
	"context"

	"go.uber.org/zap"
)

type key struct{}

// ToContext returns ctx carrying logger.
func ToContext(ctx context.Context, logger *zap.Logger) context.Context {
	return context.WithValue(ctx, key{}, logger)
}

// Extract returns the logger carried by ctx, or a no-op logger.
func Extract(ctx context.Context) *zap.Logger {
	if l, ok := ctx.Value(key{}).(*zap.Logger); ok && l != nil {
		return l
	}
	return zap.NewNop()
}
