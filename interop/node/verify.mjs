// Verifies Latchkey access tokens with jose, as a Node.js resource server would.
//
// Used by the Rust interop tests (crates/latchkey/tests/api/interop.rs) to prove
// that a verifier nobody on the project wrote accepts genuine tokens and refuses
// forged ones. `verify` is the snippet shown in docs/verifying.md; keep the two
// identical.
//
// Reads one JSON job from standard input:
//   {"jwks_uri", "issuer", "audience", "algorithms": [...],
//    "cases": [{"name", "token", "expect"}]}
// and prints one JSON line: [{"name", "accepted": bool, "error": string|null}].
// A token jose refuses is a result, not a failure; anything else (a bug here, an
// unreachable JWKS) ends the script with a non-zero status.

import { createRemoteJWKSet, errors, jwtVerify } from 'jose';

const REQUIRED_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'sid', 'client_id'];
// Header members that would let the token choose its own key (RFC 8725 §3.10).
// jose never uses them to pick a key and refuses unknown `crit` itself;
// Latchkey never sets any of them.
const REFUSED_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit'];

export async function verify(token, jwks, { issuer, audience, algorithms }) {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    typ: 'at+jwt',
    algorithms,
    requiredClaims: REQUIRED_CLAIMS,
    clockTolerance: 5,
    // Also makes jose refuse an `iat` in the future; keep it at or above
    // LATCHKEY_ACCESS_TTL.
    maxTokenAge: '1h',
  });
  const refused = REFUSED_HEADERS.filter((name) => Object.hasOwn(protectedHeader, name));
  if (refused.length > 0) {
    throw new errors.JWSInvalid(`header member not accepted: ${refused.join(', ')}`);
  }
  return payload;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function main() {
  const job = await readStdin();
  const jwks = createRemoteJWKSet(new URL(job.jwks_uri), { timeoutDuration: 10_000 });
  const results = [];
  for (const { name, token } of job.cases) {
    try {
      await verify(token, jwks, job);
      results.push({ name, accepted: true, error: null });
    } catch (error) {
      if (!(error instanceof errors.JOSEError) || error instanceof errors.JWKSTimeout) {
        throw error;
      }
      results.push({ name, accepted: false, error: `${error.code}: ${error.message}` });
    }
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

await main();
