#!/usr/bin/env bash
# The password-hash study: one Argon2id hash with Latchkey's parameters
# (m = 19456 KiB, t = 2, p = 1, 32 bytes) of one password and salt, with every
# implementation at hand, timed (median of ROUNDS, after a warm-up) and its
# output compared. Implementations:
#   argon2 (Rust)        the RustCrypto crate Latchkey used until now
#   argon2 (Rust, native) the same built with -C target-cpu=native
#   argon2-rust          the engine Latchkey uses now (runtime-dispatched SIMD)
#   libargon2 (C)        Debian's reference implementation
#   libsodium (C)        crypto_pwhash, Debian's libsodium
#   @node-rs/argon2      what Node users get (it embeds argon2-rust)
#   argon2 (npm)         node-argon2, the reference C in a Node addon
# Usage: bench/hash-study/run.sh [ROUNDS]   (installs what it lacks)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-30}

if [ ! -e /usr/include/argon2.h ] || [ ! -e /usr/include/sodium.h ]; then
  apt-get install -y libargon2-dev libsodium-dev >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O3 -o "$work/hash-c" "$here/hash.c" -largon2 -lsodium
(cd "$here/rust" && cargo build --release --quiet \
  && RUSTFLAGS="-C target-cpu=native" cargo build --release --quiet --target-dir target/native)
if [ ! -d "$here/node_modules/@node-rs/argon2" ] || [ ! -d "$here/node_modules/argon2" ]; then
  (cd "$here" && npm install --no-save --no-package-lock @node-rs/argon2@2 argon2@0.45 >/dev/null 2>&1)
fi

printf '%s\n' "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
printf '%-26s %10s  %s\n' implementation "median ms" "hash (base64), hashes/s at once"
row() {
  local name=$1; shift
  read -r ms hash rate < <("$@" 2>/dev/null)
  printf '%-26s %10s  %s %s\n' "$name" "$ms" "$hash" "${rate:-}"
  echo "$hash" >> "$work/hashes"
}
row "argon2 (Rust)" "$here/rust/target/release/hash-study" argon2 "$rounds"
row "argon2 (Rust, native)" "$here/rust/target/native/release/hash-study" argon2 "$rounds"
row "argon2-rust" "$here/rust/target/release/hash-study" argon2-rust "$rounds"
row "argon2 (Rust), 2 at once" "$here/rust/target/release/hash-study" argon2x2 "$rounds"
row "argon2-rust, 2 at once" "$here/rust/target/release/hash-study" argon2-rustx2 "$rounds"
row "libargon2 (C)" "$work/hash-c" argon2 "$rounds"
row "libsodium (C)" "$work/hash-c" sodium "$rounds"
row "@node-rs/argon2" bash -c "cd '$here' && node hash.mjs node-rs $rounds"
row "argon2 (npm)" bash -c "cd '$here' && node hash.mjs argon2 $rounds"
if [ "$(sort -u "$work/hashes" | wc -l)" = 1 ]; then
  echo "identical output: yes"
else
  echo "identical output: NO" >&2
  exit 1
fi
