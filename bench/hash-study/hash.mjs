// One Argon2id hash of the study's password and salt with a Node library,
// timed: prints "ms_median base64(raw hash)".
// Usage: node hash.mjs node-rs|argon2 ROUNDS, with @node-rs/argon2 and argon2
// installed next to it (run.sh does).

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [impl, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg ?? 30);
const password = 'violet kettle harbour';
const salt = Buffer.from('latchkey-salt-16');
const options = { memoryCost: 19456, timeCost: 2, parallelism: 1, hashLength: 32 };

let hash;
if (impl === 'node-rs') {
  const { hashRaw, Algorithm } = require('@node-rs/argon2');
  hash = () => hashRaw(password, { ...options, salt, algorithm: Algorithm.Argon2id });
} else {
  const argon2 = require('argon2');
  hash = () => argon2.hash(password, { ...options, salt, type: argon2.argon2id, raw: true });
}

let out = await hash();
const times = [];
for (let i = 0; i < rounds; i += 1) {
  const start = performance.now();
  out = await hash();
  times.push(performance.now() - start);
}
times.sort((a, b) => a - b);
console.log(`${times[Math.floor(rounds / 2)].toFixed(2)} ${Buffer.from(out).toString('base64').replace(/=+$/, '')}`);
