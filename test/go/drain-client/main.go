// Command drain-client is the Go net/http side of the drain-under-load test: a few
// goroutines (one per identity given) POST signing requests in a loop over keep-alive
// connections (Go's default Transport, as cosign and sigstore-go use it) until the server
// refuses their connection, and it counts what became of every request. Like cosign, each
// request is for a fresh ECDSA P-256 key with its proof of possession. Go's Transport does not retry a POST that was
// written and then lost, so a connection the server closes under a request shows here.
//
// Standard library only. Output: a line "answered" after the first answer (the load is on),
// then one JSON object when every goroutine has stopped.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"syscall"
	"time"
)

type identity struct {
	Email string `json:"email"`
	Token string `json:"token"`
}

// artifact stands for what the client signs: hashed before each request (the client's
// own work between two requests, while its connection sits idle in the pool).
var artifact = make([]byte, 4<<20)

// body is a v2 signing request for a fresh key pair.
func body(id identity) []byte {
	sha256.Sum256(artifact)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		panic(err)
	}
	digest := sha256.Sum256([]byte(id.Email))
	proof, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		panic(err)
	}
	out, _ := json.Marshal(map[string]any{
		"credentials": map[string]string{"oidcIdentityToken": id.Token},
		"publicKeyRequest": map[string]any{
			"publicKey": map[string]string{
				"algorithm": "ECDSA",
				"content":   string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})),
			},
			"proofOfPossession": base64.StdEncoding.EncodeToString(proof),
		},
	})
	return out
}

// refusedAtConnect: the connection could not be made (refused, or reset while connecting),
// so nothing of the request was sent.
func refusedAtConnect(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}

type cut struct {
	ID     string `json:"id"`
	Reused bool   `json:"reused"`
	Error  string `json:"error"`
}

type summary struct {
	Answered int            `json:"answered"`
	ByStatus map[string]int `json:"byStatus"`
	// Per goroutine, when (Unix ms) its last three answers without "Connection: close" came.
	LastKeptAlive map[string][]int64 `json:"lastKeptAlive"`
	Refused       int                `json:"refused"`
	Cuts          []cut              `json:"cuts"`
	// Requests sent on a connection used before (keep-alive at work).
	Reused int `json:"reused"`
}

func main() {
	url := flag.String("url", "", "signing endpoint")
	identities := flag.String("identities", "", "file with a JSON array of {email, token}")
	prefix := flag.String("prefix", "go", "X-Request-Id prefix")
	limit := flag.Duration("limit", 50*time.Second, "stop anyway after this long")
	flag.Parse()

	raw, err := os.ReadFile(*identities)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var list []identity
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		fmt.Fprintln(os.Stderr, "identities: a non-empty JSON array is needed")
		os.Exit(2)
	}
	workers := len(list)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Keep every goroutine's connection (the default keeps 2 per host).
	transport.MaxIdleConnsPerHost = workers
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	var mu sync.Mutex
	s := summary{ByStatus: map[string]int{}, LastKeptAlive: map[string][]int64{}, Cuts: []cut{}}
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				id := fmt.Sprintf("%s-%d-%d", *prefix, w, n)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(body(list[w])))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Request-Id", id)
				reused := false
				trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
				res, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				mu.Lock()
				if reused {
					s.Reused++
				}
				switch {
				case err == nil:
					s.Answered++
					s.ByStatus[fmt.Sprint(res.StatusCode)]++
					if !res.Close {
						times := append(s.LastKeptAlive[fmt.Sprint(w)], time.Now().UnixMilli())
						if len(times) > 3 {
							times = times[len(times)-3:]
						}
						s.LastKeptAlive[fmt.Sprint(w)] = times
					}
				case refusedAtConnect(err):
					s.Refused++
				case ctx.Err() != nil:
					// The time limit: not the server's doing.
				default:
					s.Cuts = append(s.Cuts, cut{ID: id, Reused: reused, Error: err.Error()})
				}
				mu.Unlock()
				if err == nil {
					once.Do(func() { fmt.Println("answered") })
				}
				if err != nil && refusedAtConnect(err) {
					return
				}
			}
		}(w)
	}
	wg.Wait()
	out, _ := json.Marshal(s)
	fmt.Println(string(out))
}
