// soak-ct-check is the soak's final, independent check of the certificates it received with
// embedded SCTs, done with Google's certificate-transparency-go as a browser and an auditor
// would: for every certificate it reads the SCT list with ct-go's x509, verifies the SCT of
// the log with ctutil.VerifySCT(embedded=true) (ct-go rebuilds the precertificate TBS from
// the final certificate itself), builds the log's Merkle leaf for it with
// ct.MerkleTreeLeafForEmbeddedSCT plus the SCT's extensions (RFC 6962 §3.4), asks the log
// for get-proof-by-hash against an STH whose signature ct-go verified, and checks that the
// proof is for the SCT's leaf_index and verifies (transparency-dev/merkle).
//
// Input on stdin: {"log": URL, "key": base64 DER SPKI, "issuers": [base64 DER issuing CA,
// ..., root], "leaves": [base64 DER, ...]}. Prints one JSON line: {"treeSize", "checked",
// "sctVerified", "included", "failures": [first few]}; exits 1 unless every leaf passed.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	ct "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/client"
	"github.com/google/certificate-transparency-go/ctutil"
	"github.com/google/certificate-transparency-go/jsonclient"
	"github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

type input struct {
	Log     string   `json:"log"`
	Key     []byte   `json:"key"`
	Issuers [][]byte `json:"issuers"`
	Leaves  [][]byte `json:"leaves"`
}

type result struct {
	TreeSize    uint64   `json:"treeSize"`
	Checked     int      `json:"checked"`
	SCTVerified int      `json:"sctVerified"`
	Included    int      `json:"included"`
	Failures    []string `json:"failures"`
}

func fatal(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "soak-ct-check: "+format+"\n", args...)
	os.Exit(2)
}

func leafIndex(ext ct.CTExtensions) (uint64, error) {
	// static-ct-api: one extension, type 0 (leaf_index), 5-byte big-endian value.
	if len(ext) != 8 || ext[0] != 0 || ext[1] != 0 || ext[2] != 5 {
		return 0, fmt.Errorf("no leaf_index extension in %x", []byte(ext))
	}
	var v uint64
	for _, b := range ext[3:] {
		v = v<<8 | uint64(b)
	}
	return v, nil
}

func sha256Of(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fatal("input: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(in.Key)
	if err != nil {
		fatal("log key: %v", err)
	}
	logID := ct.SHA256Hash{}
	copy(logID[:], sha256Of(in.Key))
	issuers := make([]*x509.Certificate, 0, len(in.Issuers))
	for i, der := range in.Issuers {
		c, err := x509.ParseCertificate(der)
		if x509.IsFatal(err) {
			fatal("issuer %d: %v", i, err)
		}
		issuers = append(issuers, c)
	}
	if len(issuers) == 0 {
		fatal("no issuing certificate")
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	lc, err := client.New(in.Log, hc, jsonclient.Options{PublicKeyDER: in.Key})
	if err != nil {
		fatal("client: %v", err)
	}
	ctx := context.Background()
	sth, err := lc.GetSTH(ctx)
	if err != nil {
		fatal("get-sth: %v", err)
	}
	if err := lc.VerifySTHSignature(*sth); err != nil {
		fatal("STH signature: %v", err)
	}

	res := result{TreeSize: sth.TreeSize, Failures: []string{}}
	var mu sync.Mutex
	seen := map[uint64]int{}
	failed := func(i int, format string, args ...interface{}) {
		mu.Lock()
		defer mu.Unlock()
		if len(res.Failures) < 20 {
			res.Failures = append(res.Failures, fmt.Sprintf("leaf %d: ", i)+fmt.Sprintf(format, args...))
		}
	}
	check := func(i int, der []byte) {
		leaf, err := x509.ParseCertificate(der)
		if x509.IsFatal(err) {
			failed(i, "parse: %v", err)
			return
		}
		chain := append([]*x509.Certificate{leaf}, issuers...)
		scts, err := x509util.ParseSCTsFromSCTList(&leaf.SCTList)
		if err != nil {
			failed(i, "SCT list: %v", err)
			return
		}
		var sct *ct.SignedCertificateTimestamp
		for _, s := range scts {
			if s.LogID.KeyID == logID {
				sct = s
			}
		}
		if sct == nil {
			failed(i, "no SCT of the log among %d embedded", len(scts))
			return
		}
		if err := ctutil.VerifySCT(pub, chain, sct, true); err != nil {
			failed(i, "SCT signature: %v", err)
			return
		}
		mu.Lock()
		res.SCTVerified++
		mu.Unlock()
		idx, err := leafIndex(sct.Extensions)
		if err != nil {
			failed(i, "%v", err)
			return
		}
		if idx >= sth.TreeSize {
			failed(i, "leaf_index %d beyond the tree size %d", idx, sth.TreeSize)
			return
		}
		mtl, err := ct.MerkleTreeLeafForEmbeddedSCT(chain, sct.Timestamp)
		if err != nil {
			failed(i, "leaf: %v", err)
			return
		}
		mtl.TimestampedEntry.Extensions = sct.Extensions
		hash, err := ct.LeafHashForLeaf(mtl)
		if err != nil {
			failed(i, "leaf hash: %v", err)
			return
		}
		var byHash *ct.GetProofByHashResponse
		for attempt := 0; ; attempt++ {
			byHash, err = lc.GetProofByHash(ctx, hash[:], sth.TreeSize)
			if err == nil || attempt == 2 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			failed(i, "get-proof-by-hash (leaf_index %d): %v", idx, err)
			return
		}
		if uint64(byHash.LeafIndex) != idx {
			failed(i, "the log has the entry at %d, the SCT says %d", byHash.LeafIndex, idx)
			return
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, sth.TreeSize, hash[:], byHash.AuditPath, sth.SHA256RootHash[:]); err != nil {
			failed(i, "inclusion at %d: %v", idx, err)
			return
		}
		mu.Lock()
		res.Included++
		seen[idx]++
		mu.Unlock()
	}

	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				check(i, in.Leaves[i])
			}
		}()
	}
	for i := range in.Leaves {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	res.Checked = len(in.Leaves)
	// Distinct certificates have distinct entries: two at one index would be a log bug.
	for idx, n := range seen {
		if n > 1 {
			failed(-1, "%d certificates claim leaf_index %d", n, idx)
		}
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if res.Included != res.Checked || len(res.Failures) > 0 {
		os.Exit(1)
	}
}
