# shellcheck shell=bash
# Private apt: fetch and verify the package indexes of another Debian suite (trixie, sid)
# and download .deb files from it, without touching the system's apt sources, lists,
# caches, preferences or dpkg status. Sourced by scripts/install-cosign.sh and
# scripts/go-refs.sh.
#
# The mirror is derived from the machine's own apt sources (the first plain Debian suite,
# i.e. not *-security / *-updates / *-backports), so no host name is written here.
#
# Trust: apt verifies the suite's InRelease file against the Debian archive keys.
# bookworm's debian-archive-keyring (2023.3+deb12u2 and later) already ships the trixie
# keys, which also sign sid. If the installed keyring is older, we download the current
# bookworm debian-archive-keyring .deb through the machine's own (bookworm-signed) sources,
# unpack it privately and use its keyring; we never fall back to [trusted=yes].
#
# Usage:
#   . scripts/lib/debian-apt.sh
#   dapt_setup STATE_DIR SUITE   # writes STATE_DIR/apt.conf, runs `apt-get update` into it
#   dapt download PKG...         # apt-get -c STATE_DIR/apt.conf ...
#   dapt_cache policy PKG        # apt-cache -c STATE_DIR/apt.conf ...
# Errors go to stderr; functions return non-zero on failure.

DAPT_CONF=""
DAPT_STATE=""
DAPT_LOG_PREFIX="${DAPT_LOG_PREFIX:-debian-apt}"

dapt_die() {
  echo "${DAPT_LOG_PREFIX}: $*" >&2
  exit 1
}

# Prints the URI of the machine's plain Debian mirror (empty when none is configured).
dapt_find_mirror() {
  local f
  {
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
  } | grep -E '^(https?|file):' | head -n 1 | sed 's:/*$::' || true
}

# apt-get / apt-cache with the private configuration written by dapt_setup.
dapt() { apt-get -q=2 -c "$DAPT_CONF" "$@"; }
dapt_cache() { apt-cache -c "$DAPT_CONF" "$@"; }

# Runs "$@"; shows its output only when it fails. apt reports some failures (e.g. a Release
# file it could not verify) only as W:/E: lines with exit status 0; those count as failures.
dapt_run_quiet() {
  local log
  log="$(mktemp -t dapt-log.XXXXXX)"
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  if grep -Eq '^(E|W): ' "$log"; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# $1 = sources file. apt-get with the machine's own apt.conf(.d) (proxies, timeouts, ...)
# but with private sources, lists, caches, preferences and dpkg status, and without the
# hooks that the system config attaches to `apt-get update` / dpkg runs.
dapt_write_conf() {
  cat >"$DAPT_STATE/apt.conf" <<EOF
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Pre-Invoke;
#clear DPkg::Post-Invoke;
Dir::Etc::SourceList "$1";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "/dev/null";
Dir::State::Lists "$DAPT_STATE/lists";
Dir::State::status "$DAPT_STATE/status";
Dir::Cache "$DAPT_STATE/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Get::List-Cleanup "false";
EOF
  DAPT_CONF="$DAPT_STATE/apt.conf"
}

# Does keyring file "$1" hold the trixie archive key? (apt checks the signature itself;
# this only picks the keyring up front.)
dapt_has_trixie_key() {
  local kr="$1" keys
  [ -r "$kr" ] || return 1
  command -v gpg >/dev/null || return 0 # cannot tell: let apt decide
  mkdir -p "$DAPT_STATE/gnupg"
  chmod 0700 "$DAPT_STATE/gnupg"
  keys="$(gpg --no-default-keyring --no-options --homedir "$DAPT_STATE/gnupg" --batch --quiet \
    --keyring "$kr" --list-keys 2>/dev/null || true)"
  grep -q '(13/trixie)' <<<"$keys"
}

# dapt_setup STATE_DIR SUITE: private apt state for SUITE (main, the machine's
# architecture) in STATE_DIR, indexes fetched and verified. STATE_DIR may be reused across
# runs (apt then only fetches what changed).
dapt_setup() {
  local suite="$2" mirror keyring codename
  command -v apt-get >/dev/null || dapt_die "apt-get not found; this needs a Debian machine"
  command -v dpkg >/dev/null || dapt_die "dpkg not found"
  DAPT_STATE="$1"
  mkdir -p "$DAPT_STATE/lists/partial" "$DAPT_STATE/cache/archives/partial" "$DAPT_STATE/keyring"
  chmod 0755 "$DAPT_STATE"
  : >"$DAPT_STATE/status"
  # apt drops to the _apt user for downloads; let it write where it downloads to.
  if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
    chown -R _apt "$DAPT_STATE/lists" "$DAPT_STATE/cache"
  fi

  mirror="$(dapt_find_mirror)"
  [ -n "$mirror" ] || dapt_die "could not find a plain Debian mirror URI in /etc/apt/sources.list{,.d}"

  keyring="/usr/share/keyrings/debian-archive-keyring.gpg"
  if ! dapt_has_trixie_key "$keyring"; then
    keyring="$DAPT_STATE/keyring/usr/share/keyrings/debian-archive-keyring.gpg"
    if ! dapt_has_trixie_key "$keyring"; then
      # The installed keyring predates trixie. Fetch the newest bookworm
      # debian-archive-keyring through the machine's own sources (verified with the
      # bookworm keys this machine already trusts) and use the keyring inside it.
      codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
      cat >"$DAPT_STATE/host.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $codename ${codename}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
      dapt_write_conf "$DAPT_STATE/host.sources"
      dapt_run_quiet dapt update || dapt_die "apt-get update of $codename failed"
      rm -rf "$DAPT_STATE/dl"
      mkdir -p "$DAPT_STATE/dl"
      [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1 && chown _apt "$DAPT_STATE/dl"
      (cd "$DAPT_STATE/dl" && dapt_run_quiet dapt download debian-archive-keyring) ||
        dapt_die "could not download debian-archive-keyring"
      dpkg -x "$DAPT_STATE"/dl/debian-archive-keyring_*.deb "$DAPT_STATE/keyring"
      rm -rf "$DAPT_STATE/dl"
      dapt_has_trixie_key "$keyring" ||
        dapt_die "no Debian archive keyring with the trixie key available; not using unverified packages"
    fi
  fi

  cat >"$DAPT_STATE/suite.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite
Components: main
Signed-By: $keyring
EOF
  dapt_write_conf "$DAPT_STATE/suite.sources"
  dapt_run_quiet dapt update || dapt_die "apt-get update of $suite from $mirror failed"
}
