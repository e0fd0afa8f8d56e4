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
#   current-<suite>              the key in use; later calls read it and never touch the network
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

cache="${MAYFLY_TOOLS_CACHE:-$HOME/.cache/mayfly}/go"
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
)

log() { echo "go-refs: $*" >&2; }
die() {
  echo "go-refs: $*" >&2
  exit 1
}

usage() {
  sed -n '2,15p' "$self" | sed 's/^# \{0,1\}//' >&2
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

current_tree() {
  local key
  key="$(cat "$cache/current-$suite" 2>/dev/null || true)"
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
  versions="$(dapt_cache show --no-all-versions $pick 2>/dev/null |
    awk '/^Package:/{p=$2} /^Version:/{print p "=" $2}' | sort -u)"
  n="$(wc -l <<<"$versions")"
  [ "$n" -eq "$(wc -l <<<"$pick")" ] || die "could not resolve a version for every package"
  key="$(printf '%s\n' "$suite" "${root_packages[@]}" "$versions" | sha)"
  dir="$cache/trees/$suite-$key"
  if [ -f "$dir/.complete" ]; then
    echo "$key" >"$cache/current-$suite.tmp"
    mv "$cache/current-$suite.tmp" "$cache/current-$suite"
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
  echo "$key" >"$cache/current-$suite.tmp"
  mv "$cache/current-$suite.tmp" "$cache/current-$suite"
  log "tree $dir ready ($n packages, $((SECONDS - t0)) s)"

  # Older trees of this suite and .debs no tree uses any more go.
  local other
  for other in "$cache/trees/$suite"-*; do
    [ "$other" = "$dir" ] || [ ! -e "$other" ] || rm -rf "$other"
  done
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
  local root
  root="$(goroot)"
  cat <<EOF
export GOROOT='$root'
export GOPATH='$(gopath)'
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

# The common overlay is used by `build DIR` and every tool build.
# Debian has at times patched github.com/sigstore/sigstore/pkg/cryptoutils.ValidatePubKey to
# accept Ed25519 keys only; Fulcio and sigstore clients must accept ECDSA and RSA keys. When
# the tree's ValidatePubKey has no ECDSA case we fail loudly rather than build a Fulcio
# that rejects every ordinary CSR.
common_overlay() {
  local f="$(gopath)/src/github.com/sigstore/sigstore/pkg/cryptoutils/publickey.go"
  [ -f "$f" ] || return 0
  if ! awk '/^func ValidatePubKey\(/{on=1} on&&/^}/{exit} on' "$f" | grep -q 'ecdsa.PublicKey'; then
    die "the tree's sigstore cryptoutils.ValidatePubKey has no ECDSA case (Debian patch); not supported for this suite"
  fi
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
    common_overlay
    log "building $dir"
    rm -rf "$out.tmp"
    mkdir -p "$(dirname "$out")"
    (cd "$dir" && run_go build -trimpath -o "$out.tmp" .) || die "go build in $dir failed"
    mv "$out.tmp" "$out"
  fi
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
    ensure_tree
    t0=$SECONDS
    echo "go: $(goroot)/bin/go ($(run_go version))"
    echo "gopath: $(gopath)"
    for d in "$repo_root"/test/go/*/; do
      [ -d "$d" ] || continue
      echo "build $(basename "$d"): $(build_dir "$d")"
    done
    log "all built ($((SECONDS - t0)) s after the tree)"
    ;;
  *) usage ;;
esac
