// validate-pubkey runs github.com/sigstore/sigstore/pkg/cryptoutils.ValidatePubKey, as the
// Go programs and reference tools built by scripts/go-refs.sh see it, on fresh keys of each
// kind. Debian's trixie package patched it to accept Ed25519 only; go-refs.sh restores
// upstream's ECDSA and RSA acceptance. test/integration/go-refs.test.ts checks the answers.
//
// Output: one line per key, "<kind> ok" or "<kind> rejected".
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return v
}

func main() {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keys := []struct {
		kind string
		pub  crypto.PublicKey
	}{
		{"ecdsa-p256", must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)).Public()},
		{"ecdsa-p384", must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)).Public()},
		{"ecdsa-p224", must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader)).Public()},
		{"rsa-2048", must(rsa.GenerateKey(rand.Reader, 2048)).Public()},
		{"rsa-1024", must(rsa.GenerateKey(rand.Reader, 1024)).Public()},
		{"ed25519", edPub},
	}
	for _, k := range keys {
		if err := cryptoutils.ValidatePubKey(k.pub); err != nil {
			fmt.Println(k.kind, "rejected")
		} else {
			fmt.Println(k.kind, "ok")
		}
	}
}
