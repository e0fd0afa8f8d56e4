// fulcio-grpc-client talks to a Fulcio-compatible gRPC server with Fulcio's own generated Go
// client (github.com/sigstore/fulcio/pkg/generated/protobuf), grpc-go's health client and
// grpc-go's reflection client. mayfly's tests use it as an implementation they did not write:
// what this program sends is what Fulcio's protobuf definitions put on the wire, and its
// `descriptor` check compares the service mayfly describes over reflection with the
// descriptor compiled into Fulcio's generated code, field by field.
//
// Usage: fulcio-grpc-client -addr 127.0.0.1:8081 [-cacert ca.pem] < ops.json
// stdin is a JSON array of operations; stdout is a JSON array of results, one per operation.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	fulcio "github.com/sigstore/fulcio/pkg/generated/protobuf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

type op struct {
	Op string `json:"op"` // sign, trustBundle, configuration, health, services, descriptor
	// sign
	Token         string `json:"token,omitempty"`         // credentials.oidc_identity_token
	MetadataToken string `json:"metadataToken,omitempty"` // oidcidentitytoken metadata
	PublicKeyPEM  string `json:"publicKeyPem,omitempty"`
	Proof         []byte `json:"proof,omitempty"` // base64 in JSON
	CSR           []byte `json:"csr,omitempty"`   // base64 in JSON: raw PEM bytes
	NoKey         bool   `json:"noKey,omitempty"`
	// health
	Service string `json:"service,omitempty"`
}

type result struct {
	Code         string           `json:"code"`
	Message      string           `json:"message,omitempty"`
	Certificates []string         `json:"certificates,omitempty"`
	Kind         string           `json:"kind,omitempty"` // detached or embedded
	SCT          string           `json:"sct,omitempty"`
	Chains       [][]string       `json:"chains,omitempty"`
	Issuers      []map[string]any `json:"issuers,omitempty"`
	Status       string           `json:"status,omitempty"`
	Services     []string         `json:"services,omitempty"`
	Mismatches   []string         `json:"mismatches,omitempty"`
	Checked      int              `json:"checked,omitempty"`
}

func fail(err error) result {
	s, _ := status.FromError(err)
	return result{Code: s.Code().String(), Message: s.Message()}
}

func main() {
	addr := flag.String("addr", "", "host:port")
	caCert := flag.String("cacert", "", "PEM CA for TLS (plaintext when empty)")
	serverName := flag.String("servername", "localhost", "TLS server name")
	flag.Parse()
	creds := insecure.NewCredentials()
	if *caCert != "" {
		pem, err := os.ReadFile(*caCert)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: *serverName, MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer conn.Close()
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var ops []op
	if err := json.Unmarshal(input, &ops); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(ops))
	for _, o := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		results = append(results, run(ctx, conn, o))
		cancel()
	}
	out, _ := json.Marshal(results)
	fmt.Println(string(out))
}

func run(ctx context.Context, conn *grpc.ClientConn, o op) result {
	ca := fulcio.NewCAClient(conn)
	switch o.Op {
	case "sign":
		req := &fulcio.CreateSigningCertificateRequest{}
		if o.Token != "" {
			req.Credentials = &fulcio.Credentials{Credentials: &fulcio.Credentials_OidcIdentityToken{OidcIdentityToken: o.Token}}
		}
		switch {
		case o.NoKey:
		case o.CSR != nil:
			req.Key = &fulcio.CreateSigningCertificateRequest_CertificateSigningRequest{CertificateSigningRequest: o.CSR}
		default:
			req.Key = &fulcio.CreateSigningCertificateRequest_PublicKeyRequest{PublicKeyRequest: &fulcio.PublicKeyRequest{
				PublicKey:         &fulcio.PublicKey{Algorithm: fulcio.PublicKeyAlgorithm_ECDSA, Content: o.PublicKeyPEM},
				ProofOfPossession: o.Proof,
			}}
		}
		if o.MetadataToken != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "oidcidentitytoken", o.MetadataToken)
		}
		resp, err := ca.CreateSigningCertificate(ctx, req)
		if err != nil {
			return fail(err)
		}
		r := result{Code: "OK"}
		if d := resp.GetSignedCertificateDetachedSct(); d != nil {
			r.Kind = "detached"
			r.Certificates = d.GetChain().GetCertificates()
			r.SCT = string(d.GetSignedCertificateTimestamp())
		} else if e := resp.GetSignedCertificateEmbeddedSct(); e != nil {
			r.Kind = "embedded"
			r.Certificates = e.GetChain().GetCertificates()
		}
		return r
	case "trustBundle":
		resp, err := ca.GetTrustBundle(ctx, &fulcio.GetTrustBundleRequest{})
		if err != nil {
			return fail(err)
		}
		r := result{Code: "OK"}
		for _, c := range resp.GetChains() {
			r.Chains = append(r.Chains, c.GetCertificates())
		}
		return r
	case "configuration":
		resp, err := ca.GetConfiguration(ctx, &fulcio.GetConfigurationRequest{})
		if err != nil {
			return fail(err)
		}
		r := result{Code: "OK"}
		for _, i := range resp.GetIssuers() {
			r.Issuers = append(r.Issuers, map[string]any{
				"issuerUrl": i.GetIssuerUrl(), "wildcardIssuerUrl": i.GetWildcardIssuerUrl(),
				"audience": i.GetAudience(), "challengeClaim": i.GetChallengeClaim(),
				"spiffeTrustDomain": i.GetSpiffeTrustDomain(), "issuerType": i.GetIssuerType(),
				"subjectDomain": i.GetSubjectDomain(), "skipEmailVerification": i.GetSkipEmailVerification(),
			})
		}
		return r
	case "health":
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: o.Service})
		if err != nil {
			return fail(err)
		}
		return result{Code: "OK", Status: resp.GetStatus().String()}
	case "services", "descriptor":
		return reflect(ctx, conn, o.Op)
	}
	return result{Code: "BadOp", Message: o.Op}
}

// reflect lists the services, or compares the described fulcio.proto with Fulcio's own.
func reflect(ctx context.Context, conn *grpc.ClientConn, what string) result {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return fail(err)
	}
	defer stream.CloseSend()
	ask := func(req *reflectionpb.ServerReflectionRequest) (*reflectionpb.ServerReflectionResponse, error) {
		if err := stream.Send(req); err != nil {
			// io.EOF means the server has already ended the stream (Fulcio answers
			// Unimplemented at once): its status comes with the next Recv.
			if err != io.EOF {
				return nil, err
			}
		}
		return stream.Recv()
	}
	if what == "services" {
		resp, err := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		if err != nil {
			return fail(err)
		}
		r := result{Code: "OK"}
		for _, s := range resp.GetListServicesResponse().GetService() {
			r.Services = append(r.Services, s.GetName())
		}
		sort.Strings(r.Services)
		return r
	}
	resp, err := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "dev.sigstore.fulcio.v2.CA"}})
	if err != nil {
		return fail(err)
	}
	if e := resp.GetErrorResponse(); e != nil {
		return result{Code: "ReflectionError", Message: e.GetErrorMessage()}
	}
	var served *descriptorpb.FileDescriptorProto
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			return result{Code: "BadDescriptor", Message: err.Error()}
		}
		if fd.GetPackage() == "dev.sigstore.fulcio.v2" {
			served = fd
		}
	}
	if served == nil {
		return result{Code: "NoDescriptor"}
	}
	theirs := protodesc.ToFileDescriptorProto(fulcio.File_fulcio_proto)
	r := result{Code: "OK"}
	r.Mismatches, r.Checked = compare(theirs, served)
	return r
}

// qualified resolves a type name the way descriptor.proto specifies: a leading dot means
// fully qualified; otherwise it is looked up from the file's package (top-level types only
// here, which is all fulcio.proto has).
func qualified(pkg, name string) string {
	if name == "" || strings.HasPrefix(name, ".") {
		return strings.TrimPrefix(name, ".")
	}
	return pkg + "." + name
}

// compare checks every message, field, oneof, enum value and method of Fulcio's descriptor
// against the served one: names, numbers, types, labels, oneof membership.
func compare(want, got *descriptorpb.FileDescriptorProto) ([]string, int) {
	var out []string
	checked := 0
	gotMsgs := map[string]*descriptorpb.DescriptorProto{}
	for _, m := range got.GetMessageType() {
		gotMsgs[m.GetName()] = m
	}
	for _, m := range want.GetMessageType() {
		g, ok := gotMsgs[m.GetName()]
		if !ok {
			out = append(out, "missing message "+m.GetName())
			continue
		}
		gotFields := map[string]*descriptorpb.FieldDescriptorProto{}
		for _, f := range g.GetField() {
			gotFields[f.GetName()] = f
		}
		for _, f := range m.GetField() {
			checked++
			gf, ok := gotFields[f.GetName()]
			name := m.GetName() + "." + f.GetName()
			if !ok {
				out = append(out, "missing field "+name)
				continue
			}
			if gf.GetNumber() != f.GetNumber() || gf.GetType() != f.GetType() || gf.GetLabel() != f.GetLabel() ||
				qualified(got.GetPackage(), gf.GetTypeName()) != qualified(want.GetPackage(), f.GetTypeName()) ||
				gf.GetJsonName() != f.GetJsonName() && gf.GetJsonName() != "" {
				out = append(out, fmt.Sprintf("field %s: want %d %v %v %s, got %d %v %v %s", name,
					f.GetNumber(), f.GetType(), f.GetLabel(), f.GetTypeName(), gf.GetNumber(), gf.GetType(), gf.GetLabel(), gf.GetTypeName()))
			}
			wantOneof, gotOneof := "", ""
			if f.OneofIndex != nil && !f.GetProto3Optional() {
				wantOneof = m.GetOneofDecl()[f.GetOneofIndex()].GetName()
			}
			if gf.OneofIndex != nil && !gf.GetProto3Optional() {
				gotOneof = g.GetOneofDecl()[gf.GetOneofIndex()].GetName()
			}
			if wantOneof != gotOneof {
				out = append(out, fmt.Sprintf("field %s: oneof want %q got %q", name, wantOneof, gotOneof))
			}
		}
		if len(g.GetField()) != len(m.GetField()) {
			out = append(out, fmt.Sprintf("message %s: %d fields, want %d", m.GetName(), len(g.GetField()), len(m.GetField())))
		}
	}
	gotEnums := map[string]*descriptorpb.EnumDescriptorProto{}
	for _, e := range got.GetEnumType() {
		gotEnums[e.GetName()] = e
	}
	for _, e := range want.GetEnumType() {
		g, ok := gotEnums[e.GetName()]
		if !ok {
			out = append(out, "missing enum "+e.GetName())
			continue
		}
		values := map[string]int32{}
		for _, v := range g.GetValue() {
			values[v.GetName()] = v.GetNumber()
		}
		for _, v := range e.GetValue() {
			checked++
			if n, ok := values[v.GetName()]; !ok || n != v.GetNumber() {
				out = append(out, fmt.Sprintf("enum value %s.%s", e.GetName(), v.GetName()))
			}
		}
	}
	for _, s := range want.GetService() {
		var g *descriptorpb.ServiceDescriptorProto
		for _, gs := range got.GetService() {
			if gs.GetName() == s.GetName() {
				g = gs
			}
		}
		if g == nil {
			out = append(out, "missing service "+s.GetName())
			continue
		}
		methods := map[string]*descriptorpb.MethodDescriptorProto{}
		for _, m := range g.GetMethod() {
			methods[m.GetName()] = m
		}
		for _, m := range s.GetMethod() {
			checked++
			gm, ok := methods[m.GetName()]
			if !ok || qualified(got.GetPackage(), gm.GetInputType()) != qualified(want.GetPackage(), m.GetInputType()) ||
				qualified(got.GetPackage(), gm.GetOutputType()) != qualified(want.GetPackage(), m.GetOutputType()) ||
				gm.GetClientStreaming() != m.GetClientStreaming() || gm.GetServerStreaming() != m.GetServerStreaming() {
				out = append(out, "method "+s.GetName()+"."+m.GetName())
			}
		}
	}
	if got.GetPackage() != want.GetPackage() {
		out = append(out, "package "+got.GetPackage())
	}
	return out, checked
}
