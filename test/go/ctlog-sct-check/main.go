// ctlog-sct-check verifies SCTs and their entries with Google's certificate-transparency-go,
// as a verifier and an auditor would: for each submission it checks the SCT signature over
// the exact (pre)certificate (ctutil.VerifySCT, which rebuilds the precert TBS itself), then
// fetches the entry at the SCT's leaf_index with get-entry-and-proof, checks that the log's
// leaf is the one ct-go builds from the chain and the SCT, and verifies its inclusion proof
// (transparency-dev/merkle) against an STH whose signature ct-go verified.
//
// Input on stdin: {"log": URL, "key": base64 DER SPKI, "items": [{"chain": [base64 DER],
// "sct": AddChainResponse}]}. Prints one line per item; exits 1 on the first failure.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	ct "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/client"
	"github.com/google/certificate-transparency-go/ctutil"
	"github.com/google/certificate-transparency-go/jsonclient"
	"github.com/google/certificate-transparency-go/tls"
	"github.com/google/certificate-transparency-go/x509"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

type item struct {
	Chain [][]byte            `json:"chain"`
	SCT   ct.AddChainResponse `json:"sct"`
}

type input struct {
	Log   string `json:"log"`
	Key   []byte `json:"key"`
	Items []item `json:"items"`
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
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

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("input: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(in.Key)
	if err != nil {
		fail("log key: %v", err)
	}
	lc, err := client.New(in.Log, http.DefaultClient, jsonclient.Options{PublicKeyDER: in.Key})
	if err != nil {
		fail("client: %v", err)
	}
	ctx := context.Background()
	sth, err := lc.GetSTH(ctx)
	if err != nil {
		fail("get-sth: %v", err)
	}
	if err := lc.VerifySTHSignature(*sth); err != nil {
		fail("STH signature: %v", err)
	}
	fmt.Printf("sth tree_size=%d signature verified\n", sth.TreeSize)
	for i, it := range in.Items {
		chain := make([]*x509.Certificate, 0, len(it.Chain))
		for _, der := range it.Chain {
			c, err := x509.ParseCertificate(der)
			if x509.IsFatal(err) {
				fail("item %d: parse: %v", i, err)
			}
			chain = append(chain, c)
		}
		sct, err := it.SCT.ToSignedCertificateTimestamp()
		if err != nil {
			fail("item %d: sct: %v", i, err)
		}
		if err := ctutil.VerifySCT(pub, chain, sct, false); err != nil {
			fail("item %d: SCT signature: %v", i, err)
		}
		idx, err := leafIndex(sct.Extensions)
		if err != nil {
			fail("item %d: %v", i, err)
		}
		if idx >= sth.TreeSize {
			fail("item %d: leaf_index %d beyond the tree size %d", i, idx, sth.TreeSize)
		}
		etype := ct.X509LogEntryType
		if chain[0].IsPrecertificate() {
			etype = ct.PrecertLogEntryType
		}
		want, err := ct.MerkleTreeLeafFromChain(chain, etype, sct.Timestamp)
		if err != nil {
			fail("item %d: leaf: %v", i, err)
		}
		// RFC 6962 §3.4: the leaf carries the SCT's extensions.
		want.TimestampedEntry.Extensions = sct.Extensions
		wantBytes, err := tls.Marshal(*want)
		if err != nil {
			fail("item %d: marshal: %v", i, err)
		}
		rsp, err := lc.GetEntryAndProof(ctx, idx, sth.TreeSize)
		if err != nil {
			fail("item %d: get-entry-and-proof: %v", i, err)
		}
		if !bytes.Equal(rsp.LeafInput, wantBytes) {
			fail("item %d: the log's leaf at %d is not the submitted entry", i, idx)
		}
		if _, err := ct.LogEntryFromLeaf(int64(idx), &ct.LeafEntry{LeafInput: rsp.LeafInput, ExtraData: rsp.ExtraData}); err != nil {
			fail("item %d: ct-go cannot parse the entry: %v", i, err)
		}
		leafHash, err := ct.LeafHashForLeaf(want)
		if err != nil {
			fail("item %d: leaf hash: %v", i, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, sth.TreeSize, leafHash[:], rsp.AuditPath, sth.SHA256RootHash[:]); err != nil {
			fail("item %d: inclusion: %v", i, err)
		}
		byHash, err := lc.GetProofByHash(ctx, leafHash[:], sth.TreeSize)
		if err != nil || uint64(byHash.LeafIndex) != idx {
			fail("item %d: get-proof-by-hash: %v", i, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, sth.TreeSize, leafHash[:], byHash.AuditPath, sth.SHA256RootHash[:]); err != nil {
			fail("item %d: inclusion by hash: %v", i, err)
		}
		kind := "x509"
		if etype == ct.PrecertLogEntryType {
			kind = "precert"
		}
		fmt.Printf("ok item %d: %s SCT verified, entry at leaf_index %d included in tree %d\n", i, kind, idx, sth.TreeSize)
	}
}
