// hello-tlog prints the RFC 6962 Merkle tree hash of every prefix of a list of leaves, as
// computed by golang.org/x/mod/sumdb/tlog (the Go checksum database's transparency log
// library). test/integration/go-refs.test.ts compares its output with roots computed
// independently in TypeScript.
//
// Usage: hello-tlog HEXLEAF...   (each argument is one leaf's bytes, hex-encoded)
// Output: one line per tree size n = 1..len(args): "<n> <root as lowercase hex>".
package main

import (
	"encoding/hex"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/tlog"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hello-tlog HEXLEAF...")
		os.Exit(2)
	}
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, idx := range indexes {
			if idx < 0 || idx >= int64(len(stored)) {
				return nil, fmt.Errorf("hash index %d out of range", idx)
			}
			out[i] = stored[idx]
		}
		return out, nil
	})
	for i, arg := range os.Args[1:] {
		leaf, err := hex.DecodeString(arg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "leaf %d is not hex: %v\n", i, err)
			os.Exit(2)
		}
		hashes, err := tlog.StoredHashes(int64(i), leaf, reader)
		if err != nil {
			fmt.Fprintf(os.Stderr, "StoredHashes(%d): %v\n", i, err)
			os.Exit(1)
		}
		stored = append(stored, hashes...)
		root, err := tlog.TreeHash(int64(i+1), reader)
		if err != nil {
			fmt.Fprintf(os.Stderr, "TreeHash(%d): %v\n", i+1, err)
			os.Exit(1)
		}
		fmt.Printf("%d %s\n", i+1, hex.EncodeToString(root[:]))
	}
}
