// Package grpc_zap is a mayfly stand-in for the v1 zap logging interceptor of
// github.com/grpc-ecosystem/go-grpc-middleware used by Fulcio: one log entry per unary call.
package grpc_zap

import (
	"context"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/logging/zap/ctxzap"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MessageProducer writes the log entry of a finished call.
type MessageProducer func(ctx context.Context, msg string, level zapcore.Level, code codes.Code, err error, duration zapcore.Field)

// Option configures UnaryServerInterceptor.
type Option func(*options)

type options struct {
	decider  func(fullMethodName string, err error) bool
	producer MessageProducer
}

// WithDecider decides whether a call is logged.
func WithDecider(f func(fullMethodName string, err error) bool) Option {
	return func(o *options) { o.decider = f }
}

// WithMessageProducer sets the function that writes the log entry.
func WithMessageProducer(f MessageProducer) Option {
	return func(o *options) { o.producer = f }
}

// UnaryServerInterceptor puts logger into the call's context and logs the finished call.
func UnaryServerInterceptor(logger *zap.Logger, opts ...Option) grpc.UnaryServerInterceptor {
	o := options{}
	for _, f := range opts {
		f(&o)
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ctx = ctxzap.ToContext(ctx, logger.With(zap.String("grpc.method", info.FullMethod)))
		resp, err := handler(ctx, req)
		if o.decider != nil && !o.decider(info.FullMethod, err) {
			return resp, err
		}
		code := status.Code(err)
		level := zapcore.InfoLevel
		if err != nil {
			level = zapcore.ErrorLevel
		}
		msg := "finished unary call with code " + code.String()
		duration := zap.Float32("grpc.time_ms", float32(time.Since(start).Nanoseconds()/1000)/1000)
		if o.producer != nil {
			o.producer(ctx, msg, level, code, err, duration)
		} else {
			ctxzap.Extract(ctx).Check(level, msg).Write(zap.Error(err), zap.String("grpc.code", code.String()), duration)
		}
		return resp, err
	}
}
