#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what the tests need (npm packages,
# openssl, redis-server, promtool, nginx, cosign, the Go reference implementations), checks
# types, lint and formatting, builds, and runs every jest project (unit, integration, e2e).
# `npm test` runs this; so does CI.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# promtool (Debian ships it in the prometheus package) runs the SLO rule tests.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# nginx fronts the replicas in the soak smoke test; Debian puts it in /usr/sbin, which a
# normal user's PATH lacks.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# PostgreSQL's server binaries (initdb, postgres) for the CT log's storage tests; Debian
# puts them in /usr/lib/postgresql/<version>/bin.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cosign 2.5 (Debian trixie) for the end-to-end test; the script is a no-op when present.
cosign_path=$(bash scripts/install-cosign.sh)
echo "cosign: ${cosign_path}"

# Go reference implementations (Fulcio, timestamp-authority, ct-go, ...) and our own Go test
# programs, built from Debian's source packages before jest starts so that no test timeout
# ever includes a Go build. Cached; the first run on a fresh machine takes minutes.
go_refs_t0=$SECONDS
bash scripts/go-refs.sh all
echo "go-refs: ready in $((SECONDS - go_refs_t0)) s"

npm ci --no-audit --no-fund
npm run typecheck
npm run lint
npm run build

results=$(mktemp --suffix=.json)
status=0
npx jest --ci --json --outputFile="$results" "$@" || status=$?
# One plain closing line that any CI reader understands, whatever jest printed above.
node -e '
  const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests + r.numRuntimeErrorTestSuites} failed, ${r.numPendingTests} skipped`);
' "$results" || true
rm -f "$results"
exit "$status"
