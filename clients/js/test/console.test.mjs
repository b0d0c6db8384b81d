// The admin console (/admin) in headless Chromium against a real Latchkey
// server. Run by crates/latchkey/tests/api/browser.rs (cargo test), which
// starts the server, makes the clients and a user with two sessions, and
// passes them in:
//
//   LATCHKEY_URL                   the server
//   ADMIN_ID, ADMIN_SECRET         an admin client
//   RESOURCE_ID, RESOURCE_SECRET   a resource-server client (refused)
//   USER_EMAIL                     a user signed in on two devices
//   ARTIFACTS_DIR                  screenshots go there
//
// Without them every test is skipped.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

const env = process.env;
const CHROMIUM = env.LATCHKEY_CHROMIUM || '/usr/bin/chromium';
const needed = ['LATCHKEY_URL', 'ADMIN_ID', 'ADMIN_SECRET', 'RESOURCE_ID', 'RESOURCE_SECRET', 'USER_EMAIL', 'ARTIFACTS_DIR'];
const missing = needed.filter((k) => !env[k]);
const skip = missing.length > 0 && `needs ${missing.join(', ')}: cargo test runs it (crates/latchkey/tests/api/browser.rs)`;

let browser;

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
  await page.screenshot({ path: join(env.ARTIFACTS_DIR, `console-${name}.png`), fullPage: true });
}

async function signIn(page, id, secret) {
  await page.fill('#client-id', id);
  await page.fill('#client-secret', secret);
  await page.click('#sign-in-form button[type=submit]');
}

test('the console is served under a strict content security policy', { skip }, async () => {
  const resp = await fetch(`${env.LATCHKEY_URL}/admin`);
  assert.equal(resp.status, 200);
  const csp = resp.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
});

test('an admin finds a user, sees sessions and events, revokes and disables', { skip }, async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The refused sign-in below is an expected 403 in the network log.
    if (m.type() === 'error' && !/status of 403/.test(m.text())) problems.push(`console: ${m.text()}`);
  });

  await page.goto(`${env.LATCHKEY_URL}/admin`);
  await shot(page, '1-sign-in');

  // A resource server's credentials are refused.
  await signIn(page, env.RESOURCE_ID, env.RESOURCE_SECRET);
  await page.waitForSelector('#message.error');
  assert.match(await page.textContent('#message'), /not an admin client/);
  assert.equal(await page.isVisible('#console'), false);

  await signIn(page, env.ADMIN_ID, env.ADMIN_SECRET);
  await page.waitForSelector('#console:not([hidden])');

  // Search by the start of the address.
  const prefix = env.USER_EMAIL.slice(0, 12);
  await page.fill('#search', prefix);
  await page.click('#search-form button[type=submit]');
  const userRow = page.locator('#users tbody tr', { hasText: env.USER_EMAIL });
  await userRow.waitFor();
  assert.equal(await page.locator('#users tbody tr').count(), 1);

  await userRow.click();
  await page.waitForSelector('#user:not([hidden])');
  assert.equal(await page.textContent('#user-title'), env.USER_EMAIL);
  const sessions = page.locator('#sessions tbody tr');
  await assertCount(sessions, 2);
  const events = await page.locator('#events tbody tr td:nth-child(2)').allTextContents();
  assert.ok(events.includes('login'), `events: ${events}`);
  assert.ok(events.includes('register'), `events: ${events}`);
  await shot(page, '2-user');

  // Revoke one session.
  await page.locator('#sessions tbody tr button').first().click();
  await assertCount(sessions, 1);
  // The console redraws the sessions, then the user list, and says what it
  // did last: wait for the message rather than read it with the table.
  await page.locator('#message', { hasText: /Revoked the session/ }).waitFor();
  assert.match(await page.textContent('#message'), /Revoked the session/);

  // Disable: the remaining session ends and the user shows as disabled.
  await page.click('#disable');
  await page.waitForSelector('#enable:not([hidden])');
  await assertCount(page.locator('#sessions tbody tr button'), 0);
  await page.locator('#users tbody tr .disabled').waitFor();
  const kinds = await page.locator('#events tbody tr td:nth-child(2)').allTextContents();
  assert.ok(kinds.includes('user_disabled'), `events: ${kinds}`);
  const actors = await page.locator('#events tbody tr td:nth-child(4)').allTextContents();
  assert.ok(actors.includes(`client:${env.ADMIN_ID}`), `actors: ${actors}`);
  await shot(page, '3-disabled');

  await page.click('#enable');
  await page.waitForSelector('#disable:not([hidden])');

  // The secret was kept in memory only.
  const kept = await page.evaluate(() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }, document.cookie]));
  assert.equal(kept, '[{},{},""]');
  assert.deepEqual(await context.cookies(), []);
  await page.reload();
  await page.waitForSelector('#sign-in:not([hidden])');
  assert.equal(await page.isVisible('#console'), false);

  assert.deepEqual(problems, []);
  await context.close();
});

async function assertCount(locator, n) {
  const deadline = Date.now() + 5000;
  let count;
  while ((count = await locator.count()) !== n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(count, n);
}
