// ctlog-tlog-check reads a static-ct-api log with golang.org/x/mod/sumdb/{note,tlog}, the
// reference implementation of signed notes and tiled logs: it verifies the checkpoint's
// RFC6962NoteSignature (note.Open with a verifier for signature type 0x05), reads hash tiles
// through tlog.TileHashReader (which authenticates every tile against the checkpoint's
// root), finds each given certificate in the data tiles, checks its record hash against the
// tree with tlog.ProveRecord/CheckRecord, and checks consistency with an older checkpoint
// (tlog.ProveTree/CheckTree).
//
// Usage: ctlog-tlog-check -url URL -key BASE64_SPKI [-old OLD_CHECKPOINT_FILE] [-cert BASE64_DER]...
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// rfc6962Verifier checks a static-ct-api RFC6962NoteSignature: uint64 timestamp ||
// DigitallySigned TreeHeadSignature over (v1, tree_hash, timestamp, size, root).
type rfc6962Verifier struct {
	name string
	hash uint32
	key  *ecdsa.PublicKey
}

func (v *rfc6962Verifier) Name() string    { return v.name }
func (v *rfc6962Verifier) KeyHash() uint32 { return v.hash }
func (v *rfc6962Verifier) Verify(msg, sig []byte) bool {
	size, root, err := parseBody(msg, v.name)
	if err != nil || len(sig) < 12 {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	ds := sig[8:]
	if ds[0] != 4 || ds[1] != 3 || int(binary.BigEndian.Uint16(ds[2:4])) != len(ds)-4 {
		return false
	}
	var input bytes.Buffer
	input.Write([]byte{0, 1})
	binary.Write(&input, binary.BigEndian, ts)
	binary.Write(&input, binary.BigEndian, uint64(size))
	input.Write(root[:])
	digest := sha256.Sum256(input.Bytes())
	return ecdsa.VerifyASN1(v.key, digest[:], ds[4:])
}

func parseBody(text []byte, origin string) (int64, tlog.Hash, error) {
	lines := strings.Split(string(text), "\n")
	if len(lines) != 4 || lines[3] != "" || lines[0] != origin {
		return 0, tlog.Hash{}, errors.New("not a three-line checkpoint body for this origin")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return 0, tlog.Hash{}, errors.New("bad size")
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != 32 {
		return 0, tlog.Hash{}, errors.New("bad root")
	}
	var h tlog.Hash
	copy(h[:], raw)
	return size, h, nil
}

func get(url string) []byte {
	rsp, err := http.Get(url)
	if err != nil {
		fail("GET %s: %v", url, err)
	}
	defer rsp.Body.Close()
	body, _ := io.ReadAll(rsp.Body)
	if rsp.StatusCode != 200 {
		fail("GET %s: %d", url, rsp.StatusCode)
	}
	return body
}

func tilePath(level string, n int64, w int) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n /= 1000; n > 0; n /= 1000 {
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	p := "tile/" + level + "/" + s
	if w < 256 {
		p += fmt.Sprintf(".p/%d", w)
	}
	return p
}

type tiles struct {
	base  string
	count int
}

func (t *tiles) Height() int { return 8 }
func (t *tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		if tile.H != 8 {
			return nil, errors.New("unexpected tile height")
		}
		out[i] = get(t.base + "/" + tilePath(strconv.Itoa(tile.L), tile.N, tile.W))
		t.count++
	}
	return out, nil
}
func (t *tiles) SaveTiles(ts []tlog.Tile, data [][]byte) {}

type checkpoint struct {
	size int64
	root tlog.Hash
}

func open(text []byte, v note.Verifier) checkpoint {
	n, err := note.Open(text, note.VerifierList(v))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	size, root, err := parseBody([]byte(n.Text), v.Name())
	if err != nil {
		fail("checkpoint: %v", err)
	}
	return checkpoint{size, root}
}

// readTileLeaf parses one static-ct-api TileLeaf and returns the MerkleTreeLeaf it stands for
// and the certificate it logs (the certificate, or the precertificate).
func readTileLeaf(b []byte) (leaf []byte, cert []byte, rest []byte, err error) {
	r := b
	take := func(n int) []byte {
		if err != nil || len(r) < n {
			err = errors.New("truncated entry")
			return nil
		}
		v := r[:n]
		r = r[n:]
		return v
	}
	u := func(n int) int {
		v := 0
		for _, x := range take(n) {
			v = v<<8 | int(x)
		}
		return v
	}
	start := len(b)
	take(8)
	etype := u(2)
	var signed []byte
	switch etype {
	case 0:
		signed = take(u(3))
	case 1:
		take(32)
		take(u(3))
	default:
		return nil, nil, nil, errors.New("bad entry type")
	}
	take(u(2)) // extensions
	tsEntryLen := start - len(r)
	if etype == 1 {
		cert = take(u(3))
	} else {
		cert = signed
	}
	take(u(2)) // chain fingerprints
	if err != nil {
		return nil, nil, nil, err
	}
	leaf = append([]byte{0, 0}, b[:tsEntryLen]...)
	return leaf, cert, r, nil
}

func main() {
	url := flag.String("url", "", "log base URL")
	keyB64 := flag.String("key", "", "base64 DER SPKI of the log key")
	origin := flag.String("origin", "", "checkpoint origin")
	old := flag.String("old", "", "file holding an older checkpoint")
	var certs multi
	flag.Var(&certs, "cert", "base64 DER of a logged certificate or precertificate (repeatable)")
	flag.Parse()

	der, err := base64.StdEncoding.DecodeString(*keyB64)
	if err != nil {
		fail("key: %v", err)
	}
	pk, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		fail("key: %v", err)
	}
	ecKey, ok := pk.(*ecdsa.PublicKey)
	if !ok {
		fail("key is not ECDSA")
	}
	logID := sha256.Sum256(der)
	idInput := append([]byte(*origin+"\n\x05"), logID[:]...)
	idHash := sha256.Sum256(idInput)
	v := &rfc6962Verifier{name: *origin, hash: binary.BigEndian.Uint32(idHash[:4]), key: ecKey}

	cp := open(get(*url+"/checkpoint"), v)
	fmt.Printf("checkpoint size=%d signature verified (note, key id %08x)\n", cp.size, v.hash)
	tr := &tiles{base: *url}
	hr := tlog.TileHashReader(tlog.Tree{N: cp.size, Hash: cp.root}, tr)
	if th, err := tlog.TreeHash(cp.size, hr); err != nil || th != cp.root {
		fail("tree hash from tiles: %v", err)
	}
	fmt.Printf("tree hash recomputed from tiles matches the checkpoint\n")

	want := map[string]bool{}
	for _, c := range certs {
		b, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			fail("cert: %v", err)
		}
		want[string(b)] = true
	}
	found := 0
	for t := int64(0); t*256 < cp.size; t++ {
		w := int(cp.size - t*256)
		if w > 256 {
			w = 256
		}
		data := get(*url + "/" + tilePath("data", t, w))
		for i := 0; i < w; i++ {
			leaf, cert, rest, err := readTileLeaf(data)
			if err != nil {
				fail("data tile %d entry %d: %v", t, i, err)
			}
			data = rest
			index := t*256 + int64(i)
			if !want[string(cert)] {
				continue
			}
			p, err := tlog.ProveRecord(cp.size, index, hr)
			if err != nil {
				fail("prove %d: %v", index, err)
			}
			if err := tlog.CheckRecord(p, cp.size, cp.root, index, tlog.RecordHash(leaf)); err != nil {
				fail("record %d: %v", index, err)
			}
			found++
			fmt.Printf("ok certificate found at index %d, inclusion verified\n", index)
		}
		if len(data) != 0 {
			fail("data tile %d has trailing bytes", t)
		}
	}
	if found != len(want) {
		fail("found %d of %d certificates", found, len(want))
	}
	if *old != "" {
		text, err := os.ReadFile(*old)
		if err != nil {
			fail("old: %v", err)
		}
		oc := open(text, v)
		p, err := tlog.ProveTree(cp.size, oc.size, hr)
		if err != nil {
			fail("prove tree: %v", err)
		}
		if err := tlog.CheckTree(p, cp.size, cp.root, oc.size, oc.root); err != nil {
			fail("consistency %d -> %d: %v", oc.size, cp.size, err)
		}
		fmt.Printf("ok consistency %d -> %d verified\n", oc.size, cp.size)
	}
	fmt.Printf("tiles fetched: %d\n", tr.count)
}
