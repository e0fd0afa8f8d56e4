#!/usr/bin/env bash
# Go reference implementations, built offline from Debian's source packages.
#
#   bash scripts/go-refs.sh go                 # path of a `go` binary (Debian's Go)
#   bash scripts/go-refs.sh gopath             # a GOPATH holding the unpacked Go sources of
#                                              # Debian's golang-*-dev packages (Fulcio, sigstore,
#                                              # sigstore-go, timestamp-authority, ct-go,
#                                              # golang.org/x/mod, grpc) and their Depends closure
#   bash scripts/go-refs.sh build DIR          # builds our own Go main package in DIR (GOPATH
#                                              # mode, against that GOPATH); prints the binary path
#   bash scripts/go-refs.sh fulcio             # path of a built Fulcio server binary
#   bash scripts/go-refs.sh timestamp-server   # path of timestamp-authority's server
#   bash scripts/go-refs.sh timestamp-cli      # path of timestamp-authority's CLI
#   bash scripts/go-refs.sh ctclient           # path of certificate-transparency-go's ctclient
#   bash scripts/go-refs.sh env                # `export` lines for GOROOT, GOPATH, GO111MODULE=off, ...
#   bash scripts/go-refs.sh all                # builds every tool above (CI does this up front)
#
# How: a private apt state (scripts/lib/debian-apt.sh: the machine's own mirror, Release
# files verified with Debian's keyring, the system's apt state untouched) for the suite
# $MAYFLY_GO_REFS_SUITE (default sid, which has the newest Fulcio / timestamp-authority /
# sigstore-go; `trixie` also works for the libraries). apt computes the Depends closure of
# the root packages below; of it we take the Go sources (golang-*-dev) and the Go toolchain
# (golang-X.Y-go, golang-X.Y-src), download them and `dpkg -x` them into one tree:
# <tree>/usr/share/gocode is the GOPATH, <tree>/usr/lib/go-X.Y the GOROOT. Builds run in GOPATH
# mode (GO111MODULE=off, GOPROXY=off, GOTOOLCHAIN=local, CGO_ENABLED=0): nothing is fetched
# from anywhere but Debian.
#
# Cache: ${MAYFLY_TOOLS_CACHE:-$HOME/.cache/mayfly}/go/
#   debs/                        downloaded .debs
#   trees/<suite>-<key>/         unpacked tree; <key> hashes the exact package versions
#   current-<suite>-<roots>      the key in use; later calls read it and never touch the network
#   bin/<name>-<key>-<recipe>/   built tools (<recipe> hashes this script)
#   build/<dir>-<hash>/          `build DIR` outputs (<hash> covers DIR's files and <key>)
#   gocache/                     GOCACHE
# MAYFLY_GO_REFS_REFRESH=1 re-resolves the package versions against the mirror.
# A flock on go/.lock serialises the slow paths (several jest workers or engineers at once).
#
# Output: the path on stdout; progress and errors on stderr; non-zero exit on failure.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
self="$repo_root/scripts/go-refs.sh"
DAPT_LOG_PREFIX="go-refs"
# shellcheck source=scripts/lib/debian-apt.sh
. "$repo_root/scripts/lib/debian-apt.sh"

cache="${MAYFLY_TOOLS_CACHE:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/mayfly}/go"
suite="${MAYFLY_GO_REFS_SUITE:-sid}"

# The packages whose Depends closure makes up the tree.
root_packages=(
  golang-go
  golang-github-sigstore-fulcio-dev
  golang-github-sigstore-sigstore-dev
  golang-github-sigstore-sigstore-go-dev
  golang-github-sigstore-timestamp-authority-dev
  golang-github-google-certificate-transparency-dev
  golang-golang-x-mod-dev
  golang-google-grpc-dev
  # for Fulcio's build: the maintained fork of github.com/PaesslerAG/jsonpath
  golang-github-intevation-jsonpath-dev
)

log() { echo "go-refs: $*" >&2; }
die() {
  echo "go-refs: $*" >&2
  exit 1
}

usage() {
  sed -n '2,16p' "$self" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

sha() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------------------------------
# Locking: the fast paths (everything already built) take no lock; a slow path takes the
# lock, then checks again whether another process did the work meanwhile.
# ---------------------------------------------------------------------------------------
have_lock=0
lock() {
  [ "$have_lock" -eq 1 ] && return 0
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  if ! flock -n 9; then
    log "waiting for another go-refs run (lock $cache/.lock)"
    flock -w 3600 9 || die "timed out waiting for $cache/.lock"
  fi
  have_lock=1
}

# ---------------------------------------------------------------------------------------
# The tree.
# ---------------------------------------------------------------------------------------
apt_tmp=""
tree="" # set by ensure_tree: the unpacked tree's root directory
tree_key=""

# The pointer file names the suite and the root package list, so editing that list (or
# switching suites) resolves anew.
pointer() { echo "$cache/current-$suite-$(printf '%s\n' "${root_packages[@]}" | sha)"; }

current_tree() {
  local key
  key="$(cat "$(pointer)" 2>/dev/null || true)"
  [ -n "$key" ] && [ -f "$cache/trees/$suite-$key/.complete" ] || return 1
  tree="$cache/trees/$suite-$key"
  tree_key="$key"
}

resolve_and_unpack() {
  local t0 state closure pick versions key dir deb pkg ver n
  t0=$SECONDS
  # The private apt state lives in /tmp, not in the cache: apt downloads as the _apt user,
  # which cannot enter a home directory such as /root.
  apt_tmp="$(mktemp -d -t go-refs-apt.XXXXXX)"
  trap 'rm -rf "$apt_tmp"' EXIT
  state="$apt_tmp"
  log "fetching the $suite package indexes (private apt state in $state)"
  dapt_setup "$state" "$suite"

  # The Depends closure (alternatives and providers included: a superset is harmless).
  closure="$(dapt_cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "${root_packages[@]}")" ||
    die "apt-cache depends failed for ${root_packages[*]}"
  # Go sources and the Go toolchain only: C libraries, debconf and the like are not needed
  # for CGO_ENABLED=0 builds.
  pick="$(grep -v '^ ' <<<"$closure" | grep -v '^<' |
    grep -E '^golang-.*-dev$|^golang-[0-9.]+-(go|src)$' | sort -u)"
  [ -n "$pick" ] || die "empty package closure"
  grep -qE '^golang-[0-9.]+-go$' <<<"$pick" || die "no Go toolchain (golang-X.Y-go) in the closure"
  # Exact versions (apt's candidate in this suite).
  local pick_list=()
  mapfile -t pick_list <<<"$pick"
  versions="$(dapt_cache show --no-all-versions "${pick_list[@]}" 2>/dev/null |
    awk '/^Package:/{p=$2} /^Version:/{print p "=" $2}' | sort -u)"
  n="$(wc -l <<<"$versions")"
  [ "$n" -eq "$(wc -l <<<"$pick")" ] || die "could not resolve a version for every package"
  key="$(printf '%s\n' "$suite" "${root_packages[@]}" "$versions" | sha)"
  dir="$cache/trees/$suite-$key"
  if [ -f "$dir/.complete" ]; then
    echo "$key" >"$(pointer).tmp"
    mv "$(pointer).tmp" "$(pointer)"
    return 0
  fi

  mkdir -p "$cache/debs"
  local missing=()
  while IFS='=' read -r pkg ver; do
    # apt-get download names files <pkg>_<version with : as %3a>_<arch>.deb
    compgen -G "$cache/debs/${pkg}_${ver//:/%3a}_*.deb" >/dev/null || missing+=("$pkg=$ver")
  done <<<"$versions"
  if [ ${#missing[@]} -gt 0 ]; then
    log "downloading ${#missing[@]} of $n packages from $suite"
    local dl="$state/dl"
    mkdir -p "$dl"
    if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
    (cd "$dl" && dapt_run_quiet dapt download "${missing[@]}") || die "apt-get download failed"
    mv "$dl"/*.deb "$cache/debs/"
  fi

  log "unpacking $n packages"
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp/root"
  while IFS='=' read -r pkg ver; do
    deb="$(compgen -G "$cache/debs/${pkg}_${ver//:/%3a}_*.deb" | head -n 1)"
    dpkg -x "$deb" "$dir.tmp/root" || die "dpkg -x $deb failed"
  done <<<"$versions"
  printf '%s\n' "$versions" >"$dir.tmp/packages.txt"
  compgen -G "$dir.tmp/root/usr/lib/go-*/bin/go" >/dev/null || die "no usr/lib/go-*/bin/go in the tree"
  [ -d "$dir.tmp/root/usr/share/gocode/src" ] || die "no usr/share/gocode/src in the tree"
  touch "$dir.tmp/.complete"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  echo "$key" >"$(pointer).tmp"
  mv "$(pointer).tmp" "$(pointer)"
  log "tree $dir ready ($n packages, $((SECONDS - t0)) s)"

  # Older trees are left alone (another process may be building against one); remove
  # them by hand with `rm -rf "$cache/trees/<old>"`.
}

ensure_tree() {
  if [ "${MAYFLY_GO_REFS_REFRESH:-0}" != 1 ] && current_tree; then return 0; fi
  lock
  if [ "${MAYFLY_GO_REFS_REFRESH:-0}" != 1 ] && current_tree; then return 0; fi
  resolve_and_unpack
  MAYFLY_GO_REFS_REFRESH=0
  current_tree || die "internal error: no tree after unpacking"
}

goroot() {
  local g
  g="$(compgen -G "$tree/root/usr/lib/go-*/bin/go" | sort -V | tail -n 1)"
  dirname "$(dirname "$g")"
}
gopath() { echo "$tree/root/usr/share/gocode"; }

# Runs go with the GOPATH-mode environment. $GO_EXTRA_GOPATH (a directory list) is put in
# front of the tree's GOPATH (build-time overlays).
run_go() {
  local root
  root="$(goroot)"
  mkdir -p "$cache/gocache"
  env GOROOT="$root" \
    GOPATH="${GO_EXTRA_GOPATH:+$GO_EXTRA_GOPATH:}$(gopath)" \
    GO111MODULE=off GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOENV=off GOFLAGS= \
    GOTELEMETRY=off GOCACHE="$cache/gocache" CGO_ENABLED="${CGO_ENABLED:-0}" \
    PATH="$root/bin:$PATH" \
    "$root/bin/go" "$@"
}

print_env() {
  local root common
  root="$(goroot)"
  common="$(common_overlay)"
  cat <<EOF
export GOROOT='$root'
export GOPATH='${common:+$common:}$(gopath)'
export GO111MODULE=off GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOENV=off GOFLAGS= GOTELEMETRY=off
export GOCACHE='$cache/gocache'
export CGO_ENABLED=0
export PATH='$root/bin':"\$PATH"
EOF
}

# ---------------------------------------------------------------------------------------
# Overlays: GOPATH directories put in front of the tree's, holding copies of a few
# packages changed at build time. Debian's sources in the tree are never modified.
# ---------------------------------------------------------------------------------------

# The common overlay, used by `build DIR` and every tool build. Prints its GOPATH directory
# (nothing when none is needed).
# Debian's trixie golang-github-sigstore-sigstore-dev patches
# github.com/sigstore/sigstore/pkg/cryptoutils.ValidatePubKey to accept Ed25519 keys only
# (to avoid a dependency on boulder's goodkey). Fulcio, timestamp-authority and every sigstore
# client must accept ECDSA and RSA keys, so when the tree's ValidatePubKey has no ECDSA case
# we revert that in a copy: Debian's function is renamed and a ValidatePubKey of our own
# accepts RSA 2048/3072/4096, ECDSA P-256/P-384/P-521 and hands Ed25519 to Debian's.
common_overlay() {
  local pkg="github.com/sigstore/sigstore/pkg/cryptoutils" f out
  f="$(gopath)/src/$pkg/publickey.go"
  [ -f "$f" ] || return 0
  if awk '/^func ValidatePubKey\(/{on=1} on&&/^}/{exit} on' "$f" | grep -q 'ecdsa.PublicKey'; then
    return 0
  fi
  out="$cache/overlays/common-$tree_key-$(sha256sum "$self" | sha)"
  if [ ! -f "$out/.complete" ]; then
    make_overlay "" "$out" "$pkg"
    sed_checked "$out/src/$pkg/publickey.go" 's|^func ValidatePubKey(|func debianValidatePubKey(|' \
      'func debianValidatePubKey('
    cat >"$out/src/$pkg/mayfly_validatepubkey.go" <<'EOF'
// Added at build time by mayfly's scripts/go-refs.sh: Debian's ValidatePubKey (renamed
// debianValidatePubKey) accepts Ed25519 keys only; Sigstore accepts ECDSA and RSA keys too.

package cryptoutils

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
)

// ValidatePubKey accepts RSA keys of 2048, 3072 or 4096 bits, ECDSA keys on P-256, P-384 or
// P-521, and Ed25519 keys.
func ValidatePubKey(pub crypto.PublicKey) error {
	switch pk := pub.(type) {
	case *rsa.PublicKey:
		switch pk.N.BitLen() {
		case 2048, 3072, 4096:
			return nil
		}
		return fmt.Errorf("unsupported RSA modulus size %d", pk.N.BitLen())
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("unsupported ECDSA curve %v", pk.Curve.Params().Name)
	}
	return debianValidatePubKey(pub)
}
EOF
    touch "$out/.complete"
  fi
  echo "$out"
}

# ---------------------------------------------------------------------------------------
# build DIR
# ---------------------------------------------------------------------------------------
build_dir() {
  local arg="$1" dir name hash out
  if [ -d "$arg" ]; then
    dir="$(cd "$arg" && pwd)"
  elif [ -d "$repo_root/$arg" ]; then
    dir="$(cd "$repo_root/$arg" && pwd)"
  else
    die "build: no such directory: $arg"
  fi
  compgen -G "$dir/*.go" >/dev/null || die "build: no .go files in $dir"
  name="$(basename "$dir")"
  hash="$( (
    cd "$dir"
    echo "$tree_key"
    sha256sum "$self" | cut -d' ' -f1
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha)"
  out="$cache/build/$name-$hash/$name"
  if [ -x "$out" ]; then
    echo "$out"
    return 0
  fi
  lock
  if [ ! -x "$out" ]; then
    local common
    common="$(common_overlay)"
    log "building $dir"
    rm -rf "$out.tmp"
    mkdir -p "$(dirname "$out")"
    # The program is built from a copy inside a GOPATH root, with a go.mod, so that its
    # imports of /vN paths resolve the way Debian unpacks them (see make_overlay).
    local work
    work="$(dirname "$out").work"
    rm -rf "$work"
    mkdir -p "$work/src/mayfly.local"
    cp -r "$dir" "$work/src/mayfly.local/$name"
    [ -f "$work/src/mayfly.local/$name/go.mod" ] ||
      printf 'module mayfly.local/%s\n' "$name" >"$work/src/mayfly.local/$name/go.mod"
    GO_EXTRA_GOPATH="$work${common:+:$common}" run_go build -trimpath -o "$out.tmp" "mayfly.local/$name" ||
      {
        rm -rf "$work" "$out.tmp"
        rmdir "$(dirname "$out")" 2>/dev/null || true
        die "go build of $dir failed"
      }
    rm -rf "$work"
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# ---------------------------------------------------------------------------------------
# Reference tools.
# ---------------------------------------------------------------------------------------

# make_overlay SHIMS OUT [PKG...]: a GOPATH directory OUT/src holding
# - copies of Debian's packages PKG (files only; PKG/... copies the whole tree below PKG),
#   for the caller to patch with sed;
# - the stand-in packages of SHIMS (scripts/lib/go-shims/<tool>, our own code; see its
#   README), if that directory exists.
# GOPATH lookup stops at the first root where an import path's directory exists, so every
# directory the overlay needs as a parent would hide Debian's package of that import path:
# such directories get a copy of Debian's files too (files only; sub-packages not in the
# overlay still come from Debian).
make_overlay() {
  local shims="$1" out="$2" d src
  shift 2
  src="$(gopath)/src"
  rm -rf "$out"
  mkdir -p "$out/src"
  for d in "$@"; do
    if [ "${d%/...}" != "$d" ]; then # the whole tree below (keeps internal/ packages usable)
      d="${d%/...}"
      [ -d "$src/$d" ] || die "no package $d in the tree"
      mkdir -p "$(dirname "$out/src/$d")"
      cp -r "$src/$d" "$out/src/$d"
      continue
    fi
    [ -d "$src/$d" ] || die "no package $d in the tree"
    mkdir -p "$out/src/$d"
    find "$src/$d" -maxdepth 1 -type f -exec cp -t "$out/src/$d/" {} +
  done
  local dirs=()
  if [ -d "$shims" ]; then
    mapfile -t dirs < <(cd "$shims" && find . -name '*.go' -printf '%h\n' | sed 's:^\./::' | sort -u)
  fi
  for d in "${dirs[@]}"; do
    mkdir -p "$out/src/$d"
    find "$shims/$d" -maxdepth 1 -type f -exec cp -t "$out/src/$d/" {} +
    # A go.mod lets a stand-in import /vN paths that Debian unpacks without the /vN element
    # (GOPATH mode's "minimal module compatibility" applies only to code under a go.mod).
    [ -f "$out/src/$d/go.mod" ] || printf 'module %s\n' "$d" >"$out/src/$d/go.mod"
  done
  mapfile -t dirs < <(cd "$out/src" && find . -mindepth 1 -type d | sed 's:^\./::' | sort)
  for d in "${dirs[@]}"; do
    if ! compgen -G "$out/src/$d/*.go" >/dev/null && [ -d "$src/$d" ]; then
      find "$src/$d" -maxdepth 1 -type f -exec cp -t "$out/src/$d/" {} +
    fi
  done
}

# sed_checked FILE SCRIPT EXPECT: applies a sed script to FILE (a copy in an overlay) and
# fails unless FILE then contains EXPECT, so an upstream change cannot silently undo it.
sed_checked() {
  sed -i "$2" "$1"
  grep -qF -- "$3" "$1" || die "patching $1 failed (upstream code changed?): $2"
}

# Build-time changes to Fulcio (on copies in the overlay; Debian's tree is not modified):
# - its Prometheus listener binds ":<metrics-port>", all interfaces, with no flag for the
#   host; bind it to --host like the HTTP listener so that a test Fulcio listens on
#   127.0.0.1 only. (The default --host is 0.0.0.0, so the default behaviour is unchanged.)
patch_fulcio() {
  local app="$1/src/github.com/sigstore/fulcio/cmd/app"
  sed_checked "$app/serve.go" \
    's|fmt.Sprintf(":%v", viper.GetString("metrics-port"))|fmt.Sprintf("%v:%v", viper.GetString("host"), viper.GetString("metrics-port"))|' \
    'fmt.Sprintf("%v:%v", viper.GetString("host"), viper.GetString("metrics-port"))'
}

# Build-time change to timestamp-authority's server (on a copy in the overlay): its
# Prometheus listener is hard-wired to ":2112" (all interfaces, one fixed port), so two
# servers on one machine collide and the second exits. The address is taken from
# $MAYFLY_TSA_METRICS_ADDR when set (tests use 127.0.0.1:<free port>), ":2112" otherwise.
patch_timestamp_server() {
  local f="$1/src/github.com/sigstore/timestamp-authority/v2/pkg/server/prometheus.go"
  sed_checked "$f" 's|Addr:\( *\)":2112",|Addr:\1metricsAddr(),|' 'metricsAddr(),'
  sed_checked "$f" '0,/^import (/s||import (\n\t"os"|' '"os"'
  cat >>"$f" <<'EOF'

// metricsAddr: added at build time by mayfly's scripts/go-refs.sh.
func metricsAddr() string {
	if a := os.Getenv("MAYFLY_TSA_METRICS_ADDR"); a != "" {
		return a
	}
	return ":2112"
}
EOF
}

# Version of a package in the tree, upstream part only (no epoch, no Debian revision).
pkg_version() {
  local v
  v="$(grep "^$1=" "$tree/packages.txt" | head -n 1 | cut -d= -f2)"
  v="${v#*:}"
  echo "${v%-*}"
}

# Recipe: which Go package each tool is, and what its build needs.
tool_pkg() {
  case "$1" in
    fulcio) echo github.com/sigstore/fulcio ;;
    timestamp-server) echo github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server ;;
    timestamp-cli) echo github.com/sigstore/timestamp-authority/v2/cmd/timestamp-cli ;;
    ctclient) echo github.com/google/certificate-transparency-go/client/ctclient ;;
    *) die "unknown tool: $1" ;;
  esac
}
tool_debpkg() {
  case "$1" in
    fulcio) echo golang-github-sigstore-fulcio-dev ;;
    timestamp-*) echo golang-github-sigstore-timestamp-authority-dev ;;
    ctclient) echo golang-github-google-certificate-transparency-dev ;;
  esac
}

build_tool() {
  local name="$1" pkg recipe out work overlay="" t0 version ldflags=""
  pkg="$(tool_pkg "$name")"
  recipe="$( (
    sha256sum "$self" | cut -d' ' -f1
    if [ -d "$repo_root/scripts/lib/go-shims/$name" ]; then
      cd "$repo_root/scripts/lib/go-shims/$name" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    fi
  ) | sha)"
  out="$cache/bin/$name-$tree_key-$recipe/$name"
  if [ -x "$out" ]; then
    echo "$out"
    return 0
  fi
  lock
  if [ -x "$out" ]; then
    echo "$out"
    return 0
  fi
  local common
  common="$(common_overlay)"
  t0=$SECONDS
  work="$(dirname "$out").tmp"
  rm -rf "$work"
  mkdir -p "$work"
  case "$name" in
    fulcio)
      overlay="$work/overlay"
      make_overlay "$repo_root/scripts/lib/go-shims/$name" "$overlay" github.com/sigstore/fulcio/cmd/app
      patch_fulcio "$overlay"
      ;;
    timestamp-server)
      overlay="$work/overlay"
      # The whole module: Go's internal/ rule is checked by directory, so a lone copy of
      # pkg/server could not import pkg/internal/... from Debian's tree.
      make_overlay "" "$overlay" github.com/sigstore/timestamp-authority/v2/...
      patch_timestamp_server "$overlay"
      ;;&
    timestamp-*)
      # Some Debian uploads of timestamp-authority lack the file that pkg/ntpmonitor embeds
      # (go:embed ntpsync.yaml). Then write a minimal one, with no servers: NTP monitoring
      # must be configured explicitly (tests pass --disable-ntp-monitoring anyway).
      local ntp="github.com/sigstore/timestamp-authority/v2/pkg/ntpmonitor"
      if [ ! -f "$(gopath)/src/$ntp/ntpsync.yaml" ]; then
        overlay="$work/overlay"
        [ -d "$overlay/src" ] || make_overlay "" "$overlay"
        mkdir -p "$overlay/src/$ntp"
        find "$(gopath)/src/$ntp" -maxdepth 1 -type f -exec cp -t "$overlay/src/$ntp/" {} +
        printf '%s\n' 'request_attempts: 3' 'request_timeout: 5' 'num_servers: 0' \
          'server_threshold: 0' 'max_time_delta: 6' 'period: 60' 'servers: []' \
          >"$overlay/src/$ntp/ntpsync.yaml"
      fi
      ;;
  esac
  version="$(pkg_version "$(tool_debpkg "$name")")"
  case "$name" in
    fulcio | timestamp-*)
      # `version` subcommands read sigs.k8s.io/release-utils/version, set by upstream's
      # Makefile from git; we set the Debian package's upstream version.
      ldflags="-X sigs.k8s.io/release-utils/version.gitVersion=v$version"
      ;;
  esac
  log "building $name $version ($pkg)"
  GO_EXTRA_GOPATH="$overlay${common:+${overlay:+:}$common}" \
    run_go build -trimpath -ldflags "$ldflags" -o "$work/$name" "$pkg" ||
    {
      rm -rf "$work"
      die "building $name failed"
    }
  rm -rf "$work/overlay"
  rm -rf "$(dirname "$out")"
  mv "$work" "$(dirname "$out")"
  log "built $name in $((SECONDS - t0)) s"
  echo "$out"
}

# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------
cmd="${1:-}"
case "$cmd" in
  go)
    ensure_tree
    echo "$(goroot)/bin/go"
    ;;
  gopath)
    ensure_tree
    gopath
    ;;
  env)
    ensure_tree
    print_env
    ;;
  build)
    [ $# -eq 2 ] || usage
    ensure_tree
    build_dir "$2"
    ;;
  all)
    # Everything the tests use, built up front (scripts/test.sh runs this before jest).
    # (Each result goes through a variable: a failure inside "$(...)" then stops the run.)
    ensure_tree
    t0=$SECONDS
    v="$(run_go version)"
    echo "go: $(goroot)/bin/go ($v)"
    echo "gopath: $(gopath)"
    for t in ctclient timestamp-cli timestamp-server fulcio; do
      p="$(build_tool "$t")"
      echo "$t: $p"
    done
    for d in "$repo_root"/test/go/*/; do
      [ -d "$d" ] || continue
      p="$(build_dir "$d")"
      echo "build $(basename "$d"): $p"
    done
    log "all built ($((SECONDS - t0)) s after the tree)"
    ;;
  fulcio | timestamp-server | timestamp-cli | ctclient)
    ensure_tree
    build_tool "$cmd"
    ;;
  *) usage ;;
esac
