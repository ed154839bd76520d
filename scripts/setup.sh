#!/usr/bin/env bash
# One-command set-up on a fresh Debian machine with Node.js >= 20.19: the Debian packages the
# tests and the demo need, then the npm dependencies (which also builds dist/).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  litecoind # solo mining source and its integration tests (regtest)
  clang     # rebuilds the WebAssembly kernels (wasm/build.sh --check in CI)
  lld       # wasm-ld for the same
  tor       # onion service and the private Tor network test (npm run test:tor)
  chromium  # the dashboard test loads the page in headless Chromium (playwright-core)
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error(`setup: Node.js >= 20.19 required, found ${process.versions.node}`); process.exit(1); }'
npm ci --no-audit --no-fund
echo "setup: done. Run the tests with: npm test"
