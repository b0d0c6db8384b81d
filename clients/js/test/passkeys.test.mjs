// Passkeys in headless Chromium with a virtual authenticator (the DevTools
// protocol's WebAuthn domain), through the example SPA, against a real
// Latchkey server. Passkeys need a domain, so the server and the SPA are both
// on localhost here. Run by crates/latchkey/tests/api/browser.rs (cargo
// test), which passes in:
//
//   LATCHKEY_URL   the Latchkey server, http://localhost:…
//   SPA_URL        examples/spa/serve.mjs, http://localhost:…
//   USER_EMAIL     an account with the test password, no second factor yet
//   ARTIFACTS_DIR  screenshots go there
//
// Without them every test is skipped.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { totpCode } from './totp.mjs';

const env = process.env;
const CHROMIUM = env.LATCHKEY_CHROMIUM || '/usr/bin/chromium';
const missing = ['LATCHKEY_URL', 'SPA_URL', 'USER_EMAIL', 'ARTIFACTS_DIR'].filter((k) => !env[k]);
const skip = missing.length > 0 && `needs ${missing.join(', ')}: cargo test runs it (crates/latchkey/tests/api/browser.rs)`;
const PASSWORD = 'violet kettle harbour';

let browser;
const pageErrors = [];

before(async () => {
  if (skip) return;
  mkdirSync(env.ARTIFACTS_DIR, { recursive: true });
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
});

async function shot(page, name) {
  await page.screenshot({ path: join(env.ARTIFACTS_DIR, `${name}.png`), fullPage: true });
}

/** The claims of the page's current access token. */
async function claims(page) {
  const token = await page.evaluate(() => globalThis.spa.client.accessToken());
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

async function loginScreen(page) {
  await page.getByTestId('logout').click();
  await page.getByTestId('screen-login').waitFor();
}

test('a passkey is registered, signs in alone and as a second factor, is refused when cloned, and is removed', { skip, timeout: 60_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 900, height: 760 } });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(error.message));
  // A platform authenticator that keeps discoverable credentials and
  // verifies its user, answering without a touch.
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  await page.goto(`${env.SPA_URL}/`);
  await page.getByTestId('login-email').fill(env.USER_EMAIL);
  await page.getByTestId('login-password').fill(PASSWORD);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('profile-email').filter({ hasText: env.USER_EMAIL }).waitFor();

  // Register (the sign-in is recent, so no step-up).
  await page.getByTestId('nav-security').click();
  await page.getByTestId('passkey-add').click();
  await page.getByTestId('passkey-row').first().waitFor();
  const name = await page.getByTestId('passkey-name').first().textContent();
  assert.match(name, /Chrome .* on Linux/);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1);
  assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');
  await shot(page, 'passkey-1-registered');

  // Signed out, the passkey alone signs in: no address typed.
  await loginScreen(page);
  await page.getByTestId('passkey-login').click();
  await page.getByTestId('profile-email').filter({ hasText: env.USER_EMAIL }).waitFor();
  const alone = await claims(page);
  assert.deepEqual(alone.amr, ['hwk', 'mfa']);

  // With an authenticator app on too, a passkey can be the second step.
  await page.getByTestId('nav-security').click();
  await page.getByTestId('totp-setup').click();
  await page.getByTestId('totp-enrolment').waitFor({ state: 'visible' });
  const secret = (await page.getByTestId('totp-secret').textContent()).trim();
  await page.getByTestId('totp-code').fill(totpCode(secret));
  await page.getByTestId('totp-confirm').click();
  await page.getByTestId('recovery-box').waitFor({ state: 'visible' });
  await loginScreen(page);
  await page.getByTestId('login-email').fill(env.USER_EMAIL);
  await page.getByTestId('login-password').fill(PASSWORD);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('mfa-passkey').waitFor({ state: 'visible' });
  await shot(page, 'passkey-2-second-step');
  await page.getByTestId('mfa-passkey').click();
  await page.getByTestId('profile-email').filter({ hasText: env.USER_EMAIL }).waitFor();
  assert.deepEqual((await claims(page)).amr, ['pwd', 'hwk', 'mfa']);

  // A copy of the authenticator whose counter is behind: refused.
  const [original] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
  assert.ok(original.signCount >= 2, `signCount ${original.signCount}`);
  await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: original.credentialId });
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...original, signCount: 0 } });
  await loginScreen(page);
  await page.getByTestId('passkey-login').click();
  await page.getByTestId('message').filter({ hasText: 'cloned' }).waitFor();
  assert.equal(await page.evaluate(() => globalThis.spa.client.isLoggedIn()), false);
  await shot(page, 'passkey-3-clone-refused');
  await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: original.credentialId });
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...original, signCount: original.signCount + 10 } });
  await page.getByTestId('passkey-login').click();
  await page.getByTestId('profile-email').filter({ hasText: env.USER_EMAIL }).waitFor();

  // Removed, it signs in no more.
  await page.getByTestId('nav-security').click();
  await page.getByTestId('passkey-remove').click();
  await page.getByTestId('message').filter({ hasText: 'Passkey removed' }).waitFor();
  assert.equal(await page.getByTestId('passkey-row').count(), 0);
  await loginScreen(page);
  await page.getByTestId('passkey-login').click();
  await page.locator('[data-testid="message"].error').waitFor();
  assert.equal(await page.evaluate(() => globalThis.spa.client.isLoggedIn()), false);
  await context.close();
});

test('the SPA raised no uncaught errors', { skip }, () => {
  assert.deepEqual(pageErrors, []);
});
