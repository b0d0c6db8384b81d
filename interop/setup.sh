#!/usr/bin/env bash
# Installs the third-party peers the tests talk to: the token verifiers the interop tests run
# (crates/latchkey/tests/api/interop.rs) and the SMTP server of the mail tests
# (aiosmtpd, tests/api/mail.rs), the webhook receiver (standardwebhooks,
# tests/api/webhooks.rs), Django, DRF, Flask and pytest for clients/python,
# and the djoser peer (bench/peer/.venv), through which the import tests
# register the Django users they import (tests/api/django.rs): PyJWT, aiosmtpd and standardwebhooks into interop/python/.venv and
# jose into interop/node/node_modules, both at the exact pinned versions.
# Idempotent: safe to run again; it only reinstalls what the pins say.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

fail() {
  echo "interop/setup.sh: $*" >&2
  exit 1
}

command -v python3 >/dev/null || fail "python3 is not installed"
command -v node >/dev/null || fail "node is not installed"
command -v npm >/dev/null || fail "npm is not installed"

echo "== interop: Python verifier (PyJWT) in interop/python/.venv"
venv="$here/python/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --requirement "$here/python/requirements.txt" || fail "pip install failed"
"$venv/bin/python" -c 'import jwt, cryptography, aiosmtpd, standardwebhooks, jsonschema, django, bcrypt, argon2, rest_framework, flask, pytest; print("   PyJWT", jwt.__version__, "cryptography", cryptography.__version__, "aiosmtpd", aiosmtpd.__version__)' \
  || fail "PyJWT does not import from $venv"

echo "== interop: the djoser + simplejwt peer in bench/peer/.venv"
peer="$here/../bench/peer/.venv"
if [ ! -x "$peer/bin/python" ]; then
  python3 -m venv "$peer" || fail "python3 -m venv failed for the peer"
fi
"$peer/bin/python" -m pip install --quiet --disable-pip-version-check \
  --requirement "$here/../bench/peer/requirements.txt" || fail "pip install failed for the peer"
"$peer/bin/python" -c 'import djoser, rest_framework_simplejwt, bcrypt, psycopg' || fail "djoser does not import from $peer"

echo "== interop: Node verifier (jose) in interop/node/node_modules"
(cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed"
(cd "$here/node" && node -e 'import("jose").then(() => console.log("   jose", require("./node_modules/jose/package.json").version))') \
  || fail "jose does not import from $here/node/node_modules"
