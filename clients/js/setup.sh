#!/usr/bin/env bash
# Installs what the browser tests (crates/latchkey/tests/api/browser.rs →
# clients/js/test/browser.test.mjs) need: playwright-core at the version the
# lockfile pins (npm ci) and, on Debian as root, the distribution's Chromium
# at /usr/bin/chromium (playwright-core drives it; it never downloads a
# browser of its own). Idempotent: safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

fail() {
  echo "clients/js/setup.sh: $*" >&2
  exit 1
}

command -v node >/dev/null || fail "node is not installed (Node.js 20 or later)"
command -v npm >/dev/null || fail "npm is not installed"

echo "== browser tests: playwright-core in clients/js/node_modules"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed"
(cd "$here" && node -e 'console.log("   playwright-core", require("playwright-core/package.json").version)') \
  || fail "playwright-core does not load from $here/node_modules"

echo "== browser tests: Chromium"
chromium="${LATCHKEY_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq chromium >/dev/null || fail "apt-get install chromium failed"
  else
    fail "$chromium is missing: install Chromium (Debian: apt-get install chromium) or set LATCHKEY_CHROMIUM"
  fi
fi
"$chromium" --version 2>/dev/null | sed 's/^/   /' || fail "$chromium does not run"
