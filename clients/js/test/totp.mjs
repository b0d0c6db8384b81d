// RFC 6238 codes for the tests, computed from the secret an enrolment shows.

import { createHmac } from 'node:crypto';

/** The code (SHA-1, 6 digits, 30 s) of a base-32 secret for the step `offset` steps from now. */
export function totpCode(secret, offset = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + offset));
  const mac = createHmac('sha1', key).update(counter).digest();
  const at = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

/**
 * The code of the step `offset` steps from now, taken at least `margin` ms
 * after a step began (waiting if need be): a server whose clock is a moment
 * behind still counts the same step, so a code of the next step is within the
 * one step of drift it allows.
 */
export async function steadyTotpCode(secret, offset = 0, margin = 2_000) {
  const into = Date.now() % 30_000;
  if (into < margin) await new Promise((resolve) => setTimeout(resolve, margin - into));
  return totpCode(secret, offset);
}
