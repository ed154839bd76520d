#!/usr/bin/env bash
# One-command set-up on a fresh Debian machine with Node.js >= 20.19: the Debian packages the
# tests and the demo need, the npm dependencies, then the build (dist/). Safe to run again.
# Each step says what it does and about how long it takes, and a long step prints how long
# it has been running, so a slow compile never looks like a hang.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  build-essential # node-gyp compiles better-sqlite3 (SQLite) when no prebuilt binary is at hand
  python3         # node-gyp itself
  litecoind       # solo mining source and its integration tests (regtest)
  clang           # rebuilds the WebAssembly kernels (wasm/build.sh --check in CI)
  lld             # wasm-ld for the same
  tor             # onion service and the private Tor network test (npm run test:tor)
  chromium        # the dashboard test loads the page in headless Chromium (playwright-core)
  postgresql      # the PostgreSQL storage tests run initdb and postgres in a temp directory
)
STEPS=5
setup_start=$SECONDS

say() { echo "setup: $*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

elapsed() {
  local s=$(($SECONDS - $1))
  if [ "$s" -ge 60 ]; then echo "$((s / 60))m$((s % 60))s"; else echo "${s}s"; fi
}

# Runs a command; every 30 s while it runs, one line saying it still is.
with_heartbeat() {
  local what=$1 start=$SECONDS ticker status=0
  shift
  (
    # Stop the pending sleep too: it would hold a piped stdout (setup.sh | tee log) open.
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    while :; do
      sleep 30 &
      sleeper=$!
      wait "$sleeper"
      say "      … $what, $(elapsed "$start") so far"
    done
  ) &
  ticker=$!
  "$@" || status=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  return "$status"
}

step=0
begin() {
  step=$((step + 1))
  step_start=$SECONDS
  say "[$step/$STEPS] $*"
}
done_step() { say "      done in $(elapsed "$step_start")"; }

begin "Debian packages: ${DEBIAN_PACKAGES[*]}"
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "      installing ${missing[*]} with apt-get (1–5 min, depending on the mirror)"
  with_heartbeat "apt-get update" as_root apt-get update -qq
  with_heartbeat "apt-get install" \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  done_step
else
  say "      all installed already"
fi

begin "Node.js: $(node --version) at $(command -v node)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error(`setup: Node.js >= 20.19 required, found ${process.versions.node}`); process.exit(1); }'
# better-sqlite3 compiles against Node's C headers. Those installed with Node itself
# (Debian/NodeSource: /usr/include/node) need no download, unlike node-gyp's default.
node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [ -z "${npm_config_nodedir:-}" ] && [ "$(npm config get nodedir)" = "undefined" ] &&
  [ -f "$node_prefix/include/node/common.gypi" ]; then
  export npm_config_nodedir=$node_prefix
  say "      native modules build against the headers in $node_prefix/include/node"
fi

begin "npm dependencies (npm ci): 2–5 min on 2 cores, most of it compiling SQLite for better-sqlite3"
with_heartbeat "npm ci" npm ci --no-audit --no-fund
done_step

begin "build: TypeScript to dist/ (npm run build): 20 s to 1 min"
with_heartbeat "npm run build" npm run --silent build
done_step

# A tarball install (README, "Install"; test/repo/install.test.ts) has no lockfile, so npm
# resolves the dependencies from registry metadata, which npm ci does not cache. Resolving them
# once here, into npm's cache, lets that install (and the test) run with --offline.
begin "npm cache: registry metadata for installing the packed tarball offline (10–30 s)"
warm_dir=$(mktemp -d)
trap 'rm -rf "$warm_dir"' EXIT
node -e '
  const { dependencies } = require("./package.json");
  const manifest = { name: "powbridge-cache-warm", version: "0.0.0", private: true, dependencies };
  require("fs").writeFileSync(process.argv[1] + "/package.json", JSON.stringify(manifest));
' "$warm_dir"
with_heartbeat "npm cache" npm install --prefix "$warm_dir" --ignore-scripts --no-audit --no-fund --silent
done_step

version=$(node -p 'require("./package.json").version')
cat <<EOF
setup: ready in $(elapsed "$setup_start"). Try next:
  npm start   # the demo: a relay, a backup relay and a miner on this machine (Ctrl-C stops it)
  npm test    # typecheck, lint, build, then the whole test suite
To install the powbridge command on this machine (README, "Install"):
  npm pack && npm install -g --allow-scripts=better-sqlite3 ./powbridge-$version.tgz
EOF
