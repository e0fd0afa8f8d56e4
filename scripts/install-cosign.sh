#!/usr/bin/env bash
# Make cosign 2.x available to the test suite and print the path of its binary.
#
# 1. A cosign 2.x already on PATH, or already unpacked in <repo>/.tools/cosign, wins.
# 2. Otherwise cosign is taken from Debian trixie (package `cosign`) even though this
#    machine runs bookworm: we write a private deb822 source list for trixie that points
#    at the same Debian mirror the machine's own apt sources use, let apt fetch and verify
#    the trixie indexes into a private state directory, `apt-get download` the .deb and
#    unpack it with `dpkg -x` into <repo>/.tools/cosign. The system's sources, lists,
#    caches and installed packages are never touched.
#
# Trust: the trixie Release file is verified by apt against the Debian archive keys.
# bookworm's debian-archive-keyring (2023.3+deb12u2 and later) already ships the trixie
# keys. If the installed keyring is older, we first download the current bookworm
# debian-archive-keyring .deb through the machine's own (bookworm-signed) sources, unpack
# it privately and use its keyring; we never fall back to [trusted=yes].
#
# Output: only errors (stderr) and, on success, the binary path (stdout).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${repo_root}/.tools/cosign"
tools_bin="${tools_dir}/usr/bin/cosign"
suite="trixie"
keyring_dir="/usr/share/keyrings"

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

command -v apt-get >/dev/null || die "apt-get not found; this script needs a Debian machine"
command -v dpkg >/dev/null || die "dpkg not found"
[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get update into a private state dir needs it)"

# ---------------------------------------------------------------------------------------
# 2. Find the machine's Debian mirror (the source whose suites are plain debian, i.e. not
#    *-security / *-updates / *-backports) from its own apt configuration.
# ---------------------------------------------------------------------------------------
find_mirror() {
  local f
  # deb822 files: paragraphs separated by blank lines; we want Types containing "deb",
  # a Suites field with a plain codename, and take the first URI of that paragraph.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk '
      function flush() {
        if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && uris != "" && enabled != "no") {
          n = split(suites, s, /[[:space:]]+/)
          for (i = 1; i <= n; i++) {
            if (s[i] != "" && s[i] !~ /[-\/]/) { split(uris, u, /[[:space:]]+/); print u[1]; exit }
          }
        }
        types = ""; uris = ""; suites = ""; enabled = ""; field = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      /^[A-Za-z-]+:/ {
        field = tolower($1); sub(/:$/, "", field)
        val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
        if (field == "types") types = val
        else if (field == "uris") uris = val
        else if (field == "suites") suites = val
        else if (field == "enabled") enabled = tolower(val)
        next
      }
      /^[[:space:]]/ {   # continuation line
        val = $0; sub(/^[[:space:]]+/, "", val)
        if (field == "uris") uris = uris " " val
        else if (field == "suites") suites = suites " " val
        next
      }
      END { flush() }
    ' "$f"
  done
  # one-line format: deb [options] URI suite component...
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk '
      /^[[:space:]]*deb[[:space:]]/ {
        line = $0; sub(/#.*/, "", line)
        gsub(/\[[^]]*\]/, "", line)
        n = split(line, w, /[[:space:]]+/)
        j = 0
        for (i = 1; i <= n; i++) if (w[i] != "") a[++j] = w[i]
        if (j >= 3 && a[3] !~ /[-\/]/) { print a[2]; exit }
      }
    ' "$f"
  done
}

mirror="$(find_mirror | grep -E '^(https?|file):' | head -n 1 || true)"
mirror="${mirror%/}"
[ -n "$mirror" ] || die "could not find a plain Debian mirror URI in /etc/apt/sources.list{,.d}"

# ---------------------------------------------------------------------------------------
# 3. Private apt configuration and state.
# ---------------------------------------------------------------------------------------
work="$(mktemp -d -t install-cosign.XXXXXX)"
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/dl" "$work/keyring"
# apt drops to the _apt user for downloads; let it write where it downloads to.
if id _apt >/dev/null 2>&1; then
  chown -R _apt "$work/lists" "$work/cache" "$work/dl"
fi

# apt-get with the machine's own apt.conf(.d) (proxies, timeouts, ...) but with private
# sources, lists and caches, and without the hooks that the system config attaches to
# `apt-get update` / dpkg runs.
write_apt_conf() { # $1 = sources file
  cat >"$work/apt.conf" <<EOF
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Pre-Invoke;
#clear DPkg::Post-Invoke;
Dir::Etc::SourceList "$1";
Dir::Etc::SourceParts "/dev/null";
Dir::State::Lists "$work/lists";
Dir::Cache "$work/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Get::List-Cleanup "false";
EOF
}

papt() {
  # -q=2 keeps apt quiet; errors still go to stderr.
  apt-get -q=2 -c "$work/apt.conf" "$@"
}

# Output of a failed apt-get run is shown; a successful run stays silent.
run_quiet() {
  local log="$work/log"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    return 1
  fi
  # apt reports some failures (e.g. a Release file it could not verify) only as W:/E:
  # lines with exit status 0; treat those as errors too.
  if grep -Eq '^(E|W): ' "$log"; then
    cat "$log" >&2
    return 1
  fi
}

# Does keyring file "$1" hold the trixie archive key? (checked by apt itself below; this
# is only used to pick the keyring up front.)
has_trixie_key() {
  local kr="$1"
  [ -r "$kr" ] || return 1
  command -v gpg >/dev/null || return 0 # cannot tell: let apt decide
  local keys
  keys="$(gpg --no-default-keyring --no-options --homedir "$work/gnupg" --batch --quiet \
    --keyring "$kr" --list-keys 2>/dev/null || true)"
  grep -q '(13/trixie)' <<<"$keys"
}
mkdir -p "$work/gnupg"
chmod 0700 "$work/gnupg"

keyring="${keyring_dir}/debian-archive-keyring.gpg"
if ! has_trixie_key "$keyring"; then
  # The installed keyring predates trixie. Fetch the newest bookworm
  # debian-archive-keyring through the machine's own sources (verified with the
  # bookworm keys this machine already trusts) and use the keyring inside it.
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  cat >"$work/host.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $codename ${codename}-updates
Components: main
Signed-By: $keyring
EOF
  write_apt_conf "$work/host.sources"
  run_quiet papt update || die "apt-get update of $codename failed"
  (cd "$work/dl" && run_quiet papt download debian-archive-keyring) ||
    die "could not download debian-archive-keyring"
  dpkg -x "$work"/dl/debian-archive-keyring_*.deb "$work/keyring"
  rm -f "$work"/dl/*.deb "$work"/lists/*_* 2>/dev/null || true
  keyring="$work/keyring${keyring_dir}/debian-archive-keyring.gpg"
  has_trixie_key "$keyring" ||
    die "no Debian archive keyring with the $suite key available; not installing unverified packages"
fi

# ---------------------------------------------------------------------------------------
# 4. Fetch the trixie indexes and the cosign .deb, then unpack it.
# ---------------------------------------------------------------------------------------
cat >"$work/trixie.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite
Components: main
Signed-By: $keyring
EOF
write_apt_conf "$work/trixie.sources"
run_quiet papt update || die "apt-get update of $suite from $mirror failed"
(cd "$work/dl" && run_quiet papt download cosign) || die "apt-get download cosign failed"

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
