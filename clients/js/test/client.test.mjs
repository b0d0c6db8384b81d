// Unit tests of clients/js/latchkey.js in Node, against a fake Latchkey that
// keeps one cookie jar for all "tabs" (as a browser profile does), rotates the
// refresh token on every use and, with no grace window, treats a second
// presentation of a used token as theft. The real-browser tests against the
// real server are in browser.test.mjs.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LatchkeyError, createClient } from '../latchkey.js';

const BASE = 'https://auth.test';

/** A fake server with one shared cookie jar; `latency` ms per request. */
function fakeServer({ latency = 5, ttl = 300 } = {}) {
  const s = {
    jar: null, // the refresh cookie the "browser" holds
    current: null,
    used: new Set(),
    alive: false,
    csrf: null,
    sessionId: 'sess-1',
    tokens: 0,
    refreshes: 0,
    reuse: 0,
    requests: [],
    revokedAccess: new Set(),
    deviceToken: undefined, // handed out at login when set
  };
  const issue = () => {
    s.tokens += 1;
    return `at-${s.tokens}`;
  };
  const json = (status, body) =>
    new Response(body === null ? null : JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/json' },
    });
  const rotate = () => {
    if (s.current) s.used.add(s.current);
    s.current = `rt-${Math.random()}`;
    return s.current;
  };
  s.fetch = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input.url;
    const path = url.slice(BASE.length);
    const headers = new Headers(init.headers);
    const cookie = init.credentials === 'include' ? s.jar : null; // read when sent
    s.requests.push({ path, headers, credentials: init.credentials, body: init.body });
    await new Promise((r) => setTimeout(r, latency));
    if (path === '/v1/login') {
      const body = JSON.parse(init.body);
      if (body.password !== 'right password') return json(400, { error: 'invalid_grant', error_description: 'no' });
      assert.equal(body.cookie, true);
      s.alive = true;
      s.used.clear();
      s.csrf = `csrf-${Math.random()}`;
      s.jar = rotate();
      const device = s.deviceToken ? { device_token: s.deviceToken } : {};
      return json(200, { access_token: issue(), token_type: 'Bearer', expires_in: ttl, session_id: s.sessionId, csrf_token: s.csrf, ...device });
    }
    if (path === '/v1/token') {
      if (headers.get('x-csrf-token') !== s.csrf) return json(403, { error: 'csrf_failed', error_description: 'csrf' });
      if (!cookie || !s.alive) return json(400, { error: 'invalid_grant', error_description: 'gone' });
      if (cookie !== s.current) {
        if (s.used.has(cookie)) {
          s.reuse += 1;
          s.alive = false;
        }
        return json(400, { error: 'invalid_grant', error_description: 'reused' });
      }
      s.refreshes += 1;
      s.jar = rotate();
      return json(200, { access_token: issue(), token_type: 'Bearer', expires_in: ttl, session_id: s.sessionId, csrf_token: s.csrf });
    }
    if (path === '/v1/logout') {
      if (headers.get('x-csrf-token') !== s.csrf) return json(403, { error: 'csrf_failed', error_description: 'csrf' });
      s.alive = false;
      s.jar = null;
      return json(204, null);
    }
    const auth = headers.get('authorization') ?? '';
    const token = auth.replace(/^Bearer /, '');
    if (!s.alive || !token.startsWith('at-') || s.revokedAccess.has(token)) {
      return json(401, { error: 'invalid_token', error_description: 'bad token' });
    }
    if (path === '/v1/me') return json(200, { id: 'u1', email: 'ada@example.com' });
    if (path === '/v1/logout-all') {
      s.alive = false;
      s.jar = null;
      return json(204, null);
    }
    return json(404, { error: 'not_found', error_description: path });
  };
  return s;
}

function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
    dump: () => Object.fromEntries(m),
  };
}

/** Web Locks, as far as the client uses them: exclusive, FIFO per name, `ifAvailable`. */
function lockManager() {
  const tails = new Map();
  const held = new Set();
  return {
    request(name, options, job) {
      if (typeof options === 'function') [options, job] = [{}, options];
      if (options.ifAvailable && (held.has(name) || tails.has(name))) return Promise.resolve(job(null));
      const prev = tails.get(name) ?? Promise.resolve();
      const run = prev.then(async () => {
        held.add(name);
        try {
          return await job({ name });
        } finally {
          held.delete(name);
        }
      });
      const tail = run.catch(() => {});
      tails.set(name, tail);
      tail.then(() => tails.get(name) === tail && tails.delete(name));
      return run;
    },
  };
}

/** Two tabs of one browser profile: shared jar, storage, locks and channel name. */
function tabs(server, { locks = lockManager(), n = 2, channelSuffix = Math.random() } = {}) {
  const storage = memoryStorage();
  const clients = [];
  for (let i = 0; i < n; i += 1) {
    clients.push(
      createClient({
        baseUrl: BASE,
        storage,
        fetch: server.fetch,
        locks,
        channel: (name) => new BroadcastChannel(`${name}:${channelSuffix}`),
      }),
    );
  }
  return { clients, storage, close: () => clients.forEach((c) => c.close()) };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

test('login keeps the access token in memory and only the CSRF token in storage', async () => {
  const server = fakeServer();
  const { clients: [a], storage, close } = tabs(server, { n: 1 });
  const user = await a.login({ email: 'ada@example.com', password: 'right password' });
  assert.equal(user.email, 'ada@example.com');
  assert.equal(await a.accessToken(), 'at-1');
  assert.deepEqual(Object.values(storage.dump()), [server.csrf]);
  assert.equal(server.requests[0].credentials, 'include');
  close();
});

test('the device token from a login is kept and sent with the next login, even after logout', async () => {
  const server = fakeServer();
  server.deviceToken = 'lk_dt_device-1';
  const { clients: [a], storage, close } = tabs(server, { n: 1 });
  await a.login({ email: 'ada@example.com', password: 'right password' });
  assert.equal(JSON.parse(server.requests[0].body).device_token, undefined, 'none known yet');
  assert.ok(Object.values(storage.dump()).includes('lk_dt_device-1'));
  await a.logout();
  await a.login({ email: 'ada@example.com', password: 'right password' });
  const logins = server.requests.filter((r) => r.path === '/v1/login');
  assert.equal(JSON.parse(logins[1].body).device_token, 'lk_dt_device-1');
  close();
});

test('a wrong password throws a LatchkeyError with status, code and description', async () => {
  const server = fakeServer();
  const { clients: [a], close } = tabs(server, { n: 1 });
  await assert.rejects(a.login({ email: 'ada@example.com', password: 'nope' }), (e) => {
    assert.ok(e instanceof LatchkeyError);
    assert.equal(e.status, 400);
    assert.equal(e.code, 'invalid_grant');
    assert.equal(e.description, 'no');
    return true;
  });
  assert.equal(a.isLoggedIn(), false);
  close();
});

test('fetch refreshes once on a 401 and retries with the new token', async () => {
  const server = fakeServer();
  const { clients: [a], close } = tabs(server, { n: 1 });
  await a.login({ email: 'ada@example.com', password: 'right password' });
  server.revokedAccess.add('at-1');
  const resp = await a.fetch(`${BASE}/v1/me`);
  assert.equal(resp.status, 200);
  assert.equal(server.refreshes, 1);
  const auth = server.requests.at(-1).headers.get('authorization');
  assert.equal(auth, 'Bearer at-2');
  close();
});

test('fetch refreshes ahead of expiry', async () => {
  const server = fakeServer({ ttl: 1 });
  const { clients: [a], close } = tabs(server, { n: 1 });
  await a.login({ email: 'ada@example.com', password: 'right password' });
  await new Promise((r) => setTimeout(r, 800)); // inside the last quarter of 1 s
  await a.fetch(`${BASE}/v1/me`);
  assert.equal(server.refreshes, 1);
  close();
});

test('concurrent refreshes in one tab share one request', async () => {
  const server = fakeServer();
  const { clients: [a], close } = tabs(server, { n: 1 });
  await a.login({ email: 'ada@example.com', password: 'right password' });
  const tokens = await Promise.all([a.refresh(), a.refresh(), a.refresh()]);
  assert.equal(new Set(tokens).size, 1);
  assert.equal(server.refreshes, 1);
  close();
});

test('two tabs refreshing at once under the lock never reuse a refresh token', async () => {
  const server = fakeServer({ latency: 10 });
  const { clients: [a, b], close } = tabs(server);
  await a.login({ email: 'ada@example.com', password: 'right password' });
  await settle();
  for (let round = 0; round < 5; round += 1) {
    const [ta, tb] = await Promise.all([a.refresh(), b.refresh()]);
    assert.equal(ta, tb, 'the waiting tab takes the token the other one published');
  }
  assert.equal(server.reuse, 0);
  assert.equal(server.refreshes, 5);
  assert.equal((await a.fetch(`${BASE}/v1/me`)).status, 200);
  close();
});

test('without the lock and without a grace window the same race is reuse', async () => {
  const server = fakeServer({ latency: 10 });
  const { clients: [a, b], close } = tabs(server, { locks: null });
  await a.login({ email: 'ada@example.com', password: 'right password' });
  await settle();
  const results = await Promise.allSettled([a.refresh(), b.refresh()]);
  assert.equal(server.reuse, 1, 'this is what the lock (or the server grace window) prevents');
  assert.ok(results.some((r) => r.status === 'rejected'));
  close();
});

test('logout in one tab logs the other out', async () => {
  const server = fakeServer();
  const { clients: [a, b], storage, close } = tabs(server);
  const seen = [];
  b.on('logout', (d) => seen.push(d.reason));
  await a.login({ email: 'ada@example.com', password: 'right password' });
  await settle();
  assert.equal(await b.accessToken(), 'at-1', 'the login was shared');
  await a.logout();
  await settle();
  assert.deepEqual(seen, ['logout']);
  assert.equal(b.isLoggedIn(), false);
  assert.deepEqual(storage.dump(), {});
  const sent = server.requests.find((r) => r.path === '/v1/logout');
  assert.equal(sent.credentials, 'include');
  assert.ok(sent.headers.get('x-csrf-token'));
  close();
});

test('a refresh refused with invalid_grant emits session-expired then logout', async () => {
  const server = fakeServer();
  const { clients: [a, b], close } = tabs(server);
  const events = [];
  a.on('session-expired', () => events.push('a:session-expired'));
  a.on('logout', () => events.push('a:logout'));
  b.on('session-expired', () => events.push('b:session-expired'));
  await a.login({ email: 'ada@example.com', password: 'right password' });
  server.alive = false; // revoked elsewhere
  await assert.rejects(a.refresh(), { code: 'invalid_grant' });
  await settle();
  assert.deepEqual(events, ['a:session-expired', 'a:logout', 'b:session-expired']);
  await assert.rejects(a.fetch(`${BASE}/v1/me`), { code: 'login_required' });
  close();
});

test('on() rejects unknown events and returns an unsubscribe function', async () => {
  const server = fakeServer();
  const { clients: [a], close } = tabs(server, { n: 1 });
  assert.throws(() => a.on('logged-in', () => {}), TypeError);
  let count = 0;
  const off = a.on('token', () => (count += 1));
  await a.login({ email: 'ada@example.com', password: 'right password' });
  off();
  await a.refresh();
  assert.equal(count, 1);
  close();
});

test('the mailed-link calls send no cookie, and a registration awaiting verification starts no session', async () => {
  const requests = [];
  const fetchImpl = async (url, init = {}) => {
    requests.push({ path: url.slice(BASE.length), credentials: init.credentials, body: init.body && JSON.parse(init.body) });
    const path = url.slice(BASE.length);
    const reply = (status, body) => new Response(body === null ? null : JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    if (path === '/v1/register') return reply(202, { verification_required: true });
    if (path === '/v1/password-reset') return reply(202, { status: 'accepted' });
    if (path === '/v1/password-reset/confirm') return init.body.includes('spent') ? reply(400, { error: 'invalid_link', error_description: 'used' }) : reply(204, null);
    if (path === '/v1/verify-email') return reply(200, { id: 'u1', email: 'a@example.com', email_verified: true });
    throw new Error(`unexpected ${path}`);
  };
  const client = createClient({ baseUrl: BASE, fetch: fetchImpl, storage: null, channel: null });
  const user = await client.register({ email: 'a@example.com', password: 'pw', locale: 'fr' });
  assert.equal(user, null, 'no account details before the address is verified');
  assert.equal(client.isLoggedIn(), false);
  assert.equal(requests[0].body.locale, 'fr');
  await client.requestPasswordReset({ email: 'a@example.com' });
  await client.resetPassword({ token: 'tok', newPassword: 'next' });
  assert.deepEqual(requests.at(-1).body, { token: 'tok', new_password: 'next' });
  assert.ok(requests.slice(1).every((r) => r.credentials === 'omit'), 'no cookie goes with a link');
  const verified = await client.verifyEmail({ token: 'tok' });
  assert.equal(verified.email_verified, true);
  await assert.rejects(client.resetPassword({ token: 'spent', newPassword: 'x' }), (e) => e instanceof LatchkeyError && e.code === 'invalid_link' && e.status === 400);
});

test('a refresh that gets no answer fails with timeout instead of hanging', async () => {
  const server = fakeServer();
  let hang = false;
  const fetch = (input, init = {}) => {
    if (!hang) return server.fetch(input, init);
    // Never answers; only the request's own signal ends it, as in a browser.
    return new Promise((_, reject) => {
      init.signal?.addEventListener('abort', () => reject(init.signal.reason));
    });
  };
  const client = createClient({ baseUrl: BASE, storage: null, fetch, locks: null, channel: null, refreshTimeout: 100, lockTimeout: 200 });
  await client.login({ email: 'a@example.com', password: 'right password' });
  hang = true;
  await assert.rejects(client.refresh(), (e) => e instanceof LatchkeyError && e.code === 'timeout' && e.status === 0);
  hang = false;
  assert.ok(await client.refresh(), 'the next refresh goes through');
});

test('a lock held by a stalled holder is taken after lockTimeout', async () => {
  const server = fakeServer();
  // A minimal LockManager: one holder, waiters in order, `signal` and `steal` as the Web Locks API has them.
  let held = null;
  const queue = [];
  const grant = (entry) => {
    held = entry;
    Promise.resolve()
      .then(() => entry.callback({ name: entry.name }))
      .then(entry.resolve, entry.reject)
      .finally(() => {
        if (held === entry) held = null;
        const next = queue.shift();
        if (next) grant(next);
      });
  };
  const locks = {
    request(name, options, callback) {
      if (typeof options === 'function') [options, callback] = [{}, options];
      return new Promise((resolve, reject) => {
        const entry = { name, callback, resolve, reject };
        if (options.steal) {
          const stolen = held;
          held = null;
          stolen?.reject(new DOMException('stolen', 'AbortError'));
          return grant(entry);
        }
        if (!held) return grant(entry);
        if (options.ifAvailable) return Promise.resolve(callback(null)).then(resolve, reject);
        queue.push(entry);
        options.signal?.addEventListener('abort', () => {
          queue.splice(queue.indexOf(entry), 1);
          reject(options.signal.reason);
        });
      });
    },
  };
  const client = createClient({ baseUrl: BASE, storage: null, fetch: server.fetch, locks, channel: null, refreshTimeout: 50, lockTimeout: 150 });
  await client.login({ email: 'a@example.com', password: 'right password' });
  // Another tab took the lock and froze.
  const frozen = locks
    .request('latchkey-refresh:https://auth.test', () => new Promise(() => {}))
    .then(() => 'kept', (e) => e.name);
  const started = Date.now();
  assert.ok(await client.refresh(), 'the refresh went through after taking the lock');
  assert.ok(Date.now() - started >= 150, 'it waited lockTimeout first');
  assert.equal(await frozen, 'AbortError', 'the frozen holder lost the lock');
  assert.equal(server.reuse, 0);
});

test('events() pages through the security events', async () => {
  const server = fakeServer();
  const seen = [];
  const fetch = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input.url;
    if (url.startsWith(`${BASE}/v1/me/events`)) {
      seen.push(url.slice(BASE.length));
      return new Response(JSON.stringify({ events: [{ id: 7, kind: 'login' }], next_before: 7 }), { status: 200 });
    }
    return server.fetch(input, init);
  };
  const client = createClient({ baseUrl: BASE, storage: null, fetch, locks: null, channel: null });
  await client.login({ email: 'a@example.com', password: 'right password' });
  const page = await client.events({ limit: 1 });
  assert.equal(page.next_before, 7);
  await client.events({ before: page.next_before, limit: 1 });
  await client.events();
  assert.deepEqual(seen, ['/v1/me/events?limit=1', '/v1/me/events?before=7&limit=1', '/v1/me/events']);
});

test('lockTimeout must exceed refreshTimeout', () => {
  assert.throws(() => createClient({ baseUrl: BASE, refreshTimeout: 1000, lockTimeout: 1000 }), TypeError);
});

test('reauthenticate() adopts the fresh access token of the same session', async () => {
  const server = fakeServer();
  const fetch = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input.url;
    if (url === `${BASE}/v1/reauthenticate`) {
      assert.deepEqual(JSON.parse(init.body), { password: 'right password' });
      const body = { access_token: 'at-stepped-up', token_type: 'Bearer', expires_in: 300, session_id: server.sessionId };
      return new Response(JSON.stringify(body), { status: 200 });
    }
    return server.fetch(input, init);
  };
  const client = createClient({ baseUrl: BASE, storage: null, fetch, locks: null, channel: null });
  await client.login({ email: 'a@example.com', password: 'right password' });
  const sources = [];
  client.on('token', ({ source }) => sources.push(source));
  await client.reauthenticate({ password: 'right password' });
  assert.equal(await client.accessToken(), 'at-stepped-up');
  assert.equal(client.sessionId(), server.sessionId);
  assert.deepEqual(sources, ['reauthenticate']);
});

test('an account with two-step sign-in logs in with login() then verifyMfa()', async () => {
  const server = fakeServer();
  const challenge = 'mfa-challenge-1';
  const fetch = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input.url;
    const body = init.body ? JSON.parse(init.body) : null;
    if (url === `${BASE}/v1/login`) {
      const answer = { error: 'mfa_required', error_description: 'a code is owed', mfa_token: challenge, expires_in: 300, methods: ['totp', 'recovery_code'] };
      return new Response(JSON.stringify(answer), { status: 403 });
    }
    if (url === `${BASE}/v1/login/mfa`) {
      assert.deepEqual(body, { mfa_token: challenge, code: '492039', cookie: true });
      // The real second step answers as a login does.
      return server.fetch(`${BASE}/v1/login`, { ...init, body: JSON.stringify({ password: 'right password', cookie: true }) });
    }
    return server.fetch(input, init);
  };
  const client = createClient({ baseUrl: BASE, storage: null, fetch, locks: null, channel: null });
  const logins = [];
  client.on('login', ({ sessionId }) => logins.push(sessionId));
  const error = await client.login({ email: 'a@example.com', password: 'right password' }).catch((e) => e);
  assert.ok(error instanceof LatchkeyError);
  assert.equal(error.code, 'mfa_required');
  assert.equal(error.mfaToken, challenge);
  assert.equal(client.isLoggedIn(), false);
  await client.verifyMfa({ mfaToken: error.mfaToken, code: '492039' });
  assert.equal(client.isLoggedIn(), true);
  assert.deepEqual(logins, [server.sessionId]);
  assert.match(await client.accessToken(), /^at-/);
});
