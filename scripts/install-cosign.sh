#!/usr/bin/env bash
# Make cosign 2.x available to the test suite and print the path of its binary.
#
# 1. A cosign 2.x already on PATH, or already unpacked in <repo>/.tools/cosign, wins.
# 2. Otherwise cosign is taken from Debian trixie (package `cosign`) even though this
#    machine runs bookworm: scripts/lib/debian-apt.sh writes a private deb822 source list
#    for trixie that points at the same Debian mirror the machine's own apt sources use,
#    lets apt fetch and verify the trixie indexes into a private state directory; we
#    `apt-get download` the .deb and unpack it with `dpkg -x` into <repo>/.tools/cosign.
#    The system's sources, lists, caches and installed packages are never touched.
#
# Trust: the trixie Release file is verified by apt against the Debian archive keys (see
# scripts/lib/debian-apt.sh; it never falls back to [trusted=yes]).
#
# Output: only errors (stderr) and, on success, the binary path (stdout).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${repo_root}/.tools/cosign"
tools_bin="${tools_dir}/usr/bin/cosign"
suite="trixie"

die() {
  echo "install-cosign: $*" >&2
  exit 1
}

# True when "$1" runs and is cosign 2.x. Upstream builds report "GitVersion: v2.x.y";
# Debian's build reports "GitVersion: devel", so for those we look at the package
# version: the VERSION file this script writes next to its own copy, or dpkg's record
# for a system-wide install.
is_cosign_v2() {
  local bin="$1" out ver=""
  [ -x "$bin" ] || return 1
  out="$("$bin" version 2>&1)" || return 1
  grep -Eq '^GitVersion:[[:space:]]+v?2\.' <<<"$out" && return 0
  grep -Eq '^GitVersion:[[:space:]]+devel' <<<"$out" || return 1
  if [ "$bin" = "$tools_bin" ]; then
    ver="$(cat "$tools_dir/VERSION" 2>/dev/null || true)"
  elif command -v dpkg-query >/dev/null; then
    local real pkg
    real="$(readlink -f "$bin")"
    pkg="$(dpkg -S "$real" 2>/dev/null | head -n 1 | cut -d: -f1 || true)"
    [ -n "$pkg" ] && ver="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
  fi
  case "$ver" in
    2.* | [0-9]:2.*) return 0 ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------------------------------
# 1. Already there?
# ---------------------------------------------------------------------------------------
if on_path="$(command -v cosign 2>/dev/null)" && is_cosign_v2 "$on_path"; then
  echo "$on_path"
  exit 0
fi
if is_cosign_v2 "$tools_bin"; then
  echo "$tools_bin"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get update into a private state dir needs it)"

# ---------------------------------------------------------------------------------------
# 2. Private apt state for trixie (scripts/lib/debian-apt.sh: the machine's own mirror,
#    Release files verified with Debian's keyring), then download the cosign .deb.
# ---------------------------------------------------------------------------------------
DAPT_LOG_PREFIX="install-cosign"
# shellcheck source=scripts/lib/debian-apt.sh
. "$repo_root/scripts/lib/debian-apt.sh"
work="$(mktemp -d -t install-cosign.XXXXXX)"
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work" # apt downloads as the _apt user
dapt_setup "$work/apt" "$suite"
mkdir -p "$work/dl"
if id _apt >/dev/null 2>&1; then chown _apt "$work/dl"; fi
(cd "$work/dl" && dapt_run_quiet dapt download cosign) || die "apt-get download cosign failed"

deb="$(ls "$work"/dl/cosign_*.deb 2>/dev/null | head -n 1 || true)"
[ -n "$deb" ] || die "apt-get download produced no cosign .deb"

rm -rf "$tools_dir.new"
mkdir -p "$tools_dir.new"
dpkg -x "$deb" "$tools_dir.new"
dpkg-deb -f "$deb" Version >"$tools_dir.new/VERSION"
[ -x "$tools_dir.new/usr/bin/cosign" ] || die "the cosign package has no usr/bin/cosign"
rm -rf "$tools_dir"
mv "$tools_dir.new" "$tools_dir"

is_cosign_v2 "$tools_bin" || die "$tools_bin does not run or is not cosign 2.x: $("$tools_bin" version 2>&1 | head -n 3)"
echo "$tools_bin"
