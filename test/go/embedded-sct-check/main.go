// embedded-sct-check verifies the SCTs embedded in a certificate with Google's
// certificate-transparency-go, as a browser-style verifier does: it reads the SCT list
// extension with ct-go's x509, and checks each SCT with ctutil.VerifySCT(embedded=true),
// which rebuilds the precertificate TBS itself (the final TBS without the SCT list) and the
// issuer key hash from the issuing certificate.
//
// Input on stdin: {"keys": [base64 DER SPKI, ...], "chain": [base64 DER leaf, issuer, ...]}.
// Each SCT must verify with one of the keys (matched by log ID). Prints one line per SCT
// ("sct log=<hex> timestamp=<ms> verified"); exits 1 on the first failure or without SCTs.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/certificate-transparency-go/ctutil"
	"github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
)

type input struct {
	Keys  [][]byte `json:"keys"`
	Chain [][]byte `json:"chain"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "embedded-sct-check: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("input: %v", err)
	}
	keys := map[[32]byte]interface{}{}
	for _, der := range in.Keys {
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			fail("log key: %v", err)
		}
		keys[sha256.Sum256(der)] = pub
	}
	chain := make([]*x509.Certificate, 0, len(in.Chain))
	for i, der := range in.Chain {
		c, err := x509.ParseCertificate(der)
		if x509.IsFatal(err) {
			fail("certificate %d: %v", i, err)
		}
		chain = append(chain, c)
	}
	if len(chain) < 2 {
		fail("the chain needs the leaf and its issuer")
	}
	if chain[0].IsPrecertificate() {
		fail("the leaf is a precertificate (poisoned)")
	}
	scts, err := x509util.ParseSCTsFromSCTList(&chain[0].SCTList)
	if err != nil {
		fail("SCT list: %v", err)
	}
	if len(scts) == 0 {
		fail("no embedded SCT")
	}
	for i, sct := range scts {
		pub, ok := keys[sct.LogID.KeyID]
		if !ok {
			fail("SCT %d: unknown log %x", i, sct.LogID.KeyID)
		}
		if err := ctutil.VerifySCT(pub, chain, sct, true); err != nil {
			fail("SCT %d: %v", i, err)
		}
		fmt.Printf("sct log=%s timestamp=%d verified\n", hex.EncodeToString(sct.LogID.KeyID[:]), sct.Timestamp)
	}
}
