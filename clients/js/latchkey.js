// Latchkey browser client: cookie mode, no dependencies.
//
// What lives where, and why (docs/browser.md has the whole model):
// - the refresh token exists only in an HttpOnly, SameSite=Strict cookie the
//   server sets; this code never sees it, so script injected into the page
//   cannot carry it away;
// - the access token lives only in this closure's memory (never in storage);
// - the CSRF token is kept in `storage` under a per-server key so that a
//   reloaded page can refresh silently. Alone it is useless: it is bound by HMAC
//   to the session and only works next to the HttpOnly cookie.
//
// Refreshes are single-flight: one promise per tab, and across tabs a Web Lock
// plus a BroadcastChannel. A tab that waited for the lock first looks whether
// the tab that held it just published a fresh access token, so two tabs never
// present one refresh token twice (which the server treats as theft).

const LOCK_PREFIX = 'latchkey-refresh:';
const CHANNEL_PREFIX = 'latchkey:';
const CSRF_KEY_PREFIX = 'latchkey:csrf:';
// The device token: not a credential, only what puts this browser's failed
// logins on a throttle of its own, apart from strangers guessing at the account.
const DEVICE_KEY_PREFIX = 'latchkey:device:';
const EVENTS = ['login', 'logout', 'session-expired', 'token'];
// How long a tab that waited for the lock waits for the holder's message.
const PUBLISH_WAIT_MS = 250;
// How long a refresh request may take before it is abandoned.
const REFRESH_TIMEOUT_MS = 10_000;
// How long a tab waits for the lock before taking it from its holder: longer
// than a refresh may take, so a live holder has given up by then; the holder
// left is frozen (a tab the browser suspended keeps its locks) or stuck.
const LOCK_TIMEOUT_MS = 15_000;

/** An error answered by the server (or a failure to reach it: status 0). */
export class LatchkeyError extends Error {
  constructor(status, code, description = '') {
    super(description ? `${code}: ${description}` : code);
    this.name = 'LatchkeyError';
    this.status = status;
    this.code = code;
    this.description = description;
    /** True when this failure ended the session (the logout events have fired). */
    this.sessionEnded = false;
    /** With code `mfa_required`: the challenge to pass to `verifyMfa()`… */
    this.mfaToken = null;
    /** …and what it takes: `totp`, `recovery_code`, `passkey`. */
    this.methods = null;
  }
}

function loginRequired() {
  return new LatchkeyError(401, 'login_required', 'not logged in');
}

async function errorOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: fall back to the status line
  }
  const code = typeof body?.error === 'string' ? body.error : `http_${resp.status}`;
  const description =
    typeof body?.error_description === 'string' ? body.error_description : resp.statusText;
  const error = new LatchkeyError(resp.status, code, description);
  if (typeof body?.mfa_token === 'string') error.mfaToken = body.mfa_token;
  if (Array.isArray(body?.methods)) error.methods = body.methods;
  return error;
}

// WebAuthn options and answers travel as JSON with binary fields in
// base64url; the browser wants ArrayBuffers. Recent browsers convert both
// ways themselves (parse…OptionsFromJSON, toJSON); these do it otherwise.
function fromB64url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
}

function toB64url(buffer) {
  let raw = '';
  for (const byte of new Uint8Array(buffer)) raw += String.fromCharCode(byte);
  return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function creationOptions(json) {
  const PKC = globalThis.PublicKeyCredential;
  if (typeof PKC?.parseCreationOptionsFromJSON === 'function') return PKC.parseCreationOptionsFromJSON(json);
  return {
    ...json,
    challenge: fromB64url(json.challenge),
    user: { ...json.user, id: fromB64url(json.user.id) },
    excludeCredentials: (json.excludeCredentials ?? []).map((c) => ({ ...c, id: fromB64url(c.id) })),
  };
}

function requestOptions(json) {
  const PKC = globalThis.PublicKeyCredential;
  if (typeof PKC?.parseRequestOptionsFromJSON === 'function') return PKC.parseRequestOptionsFromJSON(json);
  return {
    ...json,
    challenge: fromB64url(json.challenge),
    allowCredentials: (json.allowCredentials ?? []).map((c) => ({ ...c, id: fromB64url(c.id) })),
  };
}

function credentialJSON(credential) {
  if (typeof credential.toJSON === 'function') return credential.toJSON();
  const r = credential.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    response.transports = r.getTransports?.() ?? [];
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  return {
    id: credential.id,
    rawId: toB64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults?.() ?? {},
  };
}

function defaultStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // e.g. a sandboxed frame, where touching localStorage throws
  }
}

function defaultChannel(name) {
  return typeof BroadcastChannel === 'function' ? new BroadcastChannel(name) : null;
}

/** An abort signal that fires with a TimeoutError after `ms`, until cleared. */
function deadline(ms) {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')),
    ms,
  );
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

function report(error) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else setTimeout(() => { throw error; });
}

/**
 * Creates a client for one Latchkey server.
 * Options beyond `baseUrl` and `storage` exist for tests and unusual hosts:
 * `fetch`, `locks` (a LockManager, or null for none), `channel` (a factory
 * name → BroadcastChannel-like, or null for none), `leeway` (seconds before
 * expiry at which the access token is refreshed ahead of time),
 * `refreshTimeout` (ms a refresh request may take, default 10 000) and
 * `lockTimeout` (ms to wait for another tab's refresh before taking the lock
 * from it, default 15 000; keep it above `refreshTimeout`).
 */
export function createClient({
  baseUrl,
  storage = defaultStorage(),
  fetch: fetchImpl = globalThis.fetch.bind(globalThis),
  locks = globalThis.navigator?.locks ?? null,
  channel = defaultChannel,
  leeway = 30,
  refreshTimeout = REFRESH_TIMEOUT_MS,
  lockTimeout = LOCK_TIMEOUT_MS,
} = {}) {
  if (!baseUrl) throw new TypeError('createClient: baseUrl is required');
  if (!(lockTimeout > refreshTimeout)) {
    throw new TypeError('createClient: lockTimeout must be longer than refreshTimeout');
  }
  const base = String(baseUrl).replace(/\/+$/, '');
  const csrfKey = CSRF_KEY_PREFIX + base;
  const deviceKey = DEVICE_KEY_PREFIX + base;
  const bus = channel ? channel(CHANNEL_PREFIX + base) : null;
  const listeners = new Map(EVENTS.map((e) => [e, new Set()]));

  let access = null; // { token, expiresAt (ms), sessionId }
  let memoryCsrf = null;
  let inflight = null;
  const waiters = new Set();
  // Bumped at every login and logout, so that a refresh answered after the
  // session changed under it cannot resurrect the old one.
  let epoch = 0;

  function emit(event, detail) {
    for (const handler of [...listeners.get(event)]) {
      try {
        handler(detail);
      } catch (error) {
        report(error);
      }
    }
  }

  function readCsrf() {
    try {
      if (storage) return storage.getItem(csrfKey);
    } catch {
      // storage unusable: memory only
    }
    return memoryCsrf;
  }

  function writeCsrf(value) {
    memoryCsrf = value;
    try {
      if (value) storage?.setItem(csrfKey, value);
      else storage?.removeItem(csrfKey);
    } catch {
      // storage unusable: memory only, and no silent refresh after a reload
    }
  }

  function readDevice() {
    try {
      return storage?.getItem(deviceKey) ?? null;
    } catch {
      return null;
    }
  }

  function writeDevice(value) {
    try {
      if (typeof value === 'string') storage?.setItem(deviceKey, value);
    } catch {
      // storage unusable: the next login counts as a new device
    }
  }

  // Refresh this long before expiry; never so early that a short-lived token
  // would count as stale from the start.
  function marginFor(expiresAt) {
    return Math.min(leeway * 1000, (expiresAt - Date.now()) / 4);
  }

  function fresh(a) {
    return a !== null && a.expiresAt - Date.now() > a.margin;
  }

  function hold(token, expiresAt, sessionId) {
    access = { token, expiresAt, sessionId: sessionId ?? null, margin: marginFor(expiresAt) };
  }

  function post(message) {
    try {
      bus?.postMessage(message);
    } catch (error) {
      report(error);
    }
  }

  function shared(type, extra = {}) {
    return {
      type,
      access_token: access.token,
      expires_at: access.expiresAt,
      session_id: access.sessionId,
      csrf_token: readCsrf(),
      ...extra,
    };
  }

  function adopt(body) {
    if (typeof body?.access_token !== 'string') {
      throw new LatchkeyError(0, 'invalid_response', 'no access_token in the answer');
    }
    const expiresIn = Number.isFinite(body.expires_in) ? body.expires_in : 300;
    // Never keep a refresh token, even if a server answered one in the body.
    hold(body.access_token, Date.now() + expiresIn * 1000, body.session_id);
    if (typeof body.csrf_token === 'string') writeCsrf(body.csrf_token);
  }

  /** Forgets the session here and in other tabs; emits the events. */
  function end(reason, error) {
    const had = access !== null || readCsrf() !== null;
    const sessionId = access?.sessionId ?? null;
    epoch += 1;
    access = null;
    writeCsrf(null);
    post({ type: reason === 'expired' ? 'expired' : 'logout', reason, session_id: sessionId });
    if (reason === 'expired') emit('session-expired', { error });
    if (had || reason === 'expired') emit('logout', { reason, source: 'local' });
  }

  async function send(path, { method = 'POST', body, headers = {}, credentials = 'include', timeout } = {}) {
    const init = { method, headers: { ...headers }, credentials, cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const limit = timeout ? deadline(timeout) : null;
    if (limit) init.signal = limit.signal;
    try {
      return await fetchImpl(base + path, init);
    } catch (error) {
      if (error?.name === 'TimeoutError') {
        throw new LatchkeyError(0, 'timeout', `no answer from ${path} within ${timeout} ms`);
      }
      throw new LatchkeyError(0, 'network_error', String(error?.message ?? error));
    } finally {
      limit?.clear();
    }
  }

  async function refreshOverNetwork(retried = false) {
    const csrf = readCsrf();
    if (!csrf) throw loginRequired();
    const started = epoch;
    const resp = await send('/v1/token', {
      body: { grant_type: 'refresh_token' },
      headers: { 'X-CSRF-Token': csrf },
      timeout: refreshTimeout,
    });
    if (started !== epoch) throw loginRequired();
    if (!resp.ok) {
      const error = await errorOf(resp);
      if (error.code !== 'invalid_grant' && error.code !== 'csrf_failed') throw error;
      // Another tab started a new session meanwhile: try once with its token.
      if (readCsrf() !== csrf && readCsrf() && !retried) return refreshOverNetwork(true);
      // The session is over (expired, revoked, reused) or can no longer be
      // refreshed from this page (its CSRF token does not match the cookie).
      error.sessionEnded = true;
      end('expired', error);
      throw error;
    }
    adopt(await resp.json());
    post(shared('token'));
    emit('token', { expiresAt: access.expiresAt, source: 'refresh' });
    return access.token;
  }

  /** Resolves at the next message from another tab, or after `ms`. */
  function nextMessage(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
  }

  async function underLock(stale, started, waited) {
    const usable = () => fresh(access) && access.token !== stale;
    // Another tab held the lock: it has most likely just refreshed, and its
    // message may land a moment after the lock did. Missing it costs one more
    // rotation, never a reuse: its answer already put the new cookie in the
    // jar every tab shares.
    if (waited && bus && !usable()) await nextMessage(PUBLISH_WAIT_MS);
    if (started !== epoch && access === null) throw loginRequired();
    if (usable()) return access.token;
    return refreshOverNetwork();
  }

  /**
   * Runs `job` under the lock, waiting at most `lockTimeout` for it; then
   * takes it from the holder, which a live tab would have released by then.
   * A closed tab's locks are released by the browser at once.
   */
  async function withLock(job) {
    const name = LOCK_PREFIX + base;
    const limit = deadline(lockTimeout);
    const granted = (lock) => {
      limit.clear();
      return job(lock);
    };
    try {
      return await locks.request(name, { signal: limit.signal }, granted);
    } catch (error) {
      if (error?.name !== 'TimeoutError') throw lockLost(error);
      return locks.request(name, { steal: true }, job).catch((e) => {
        throw lockLost(e);
      });
    }
  }

  /** What a lock request rejects with when another tab took the lock from this stalled one. */
  function lockLost(error) {
    return error?.name === 'AbortError'
      ? new LatchkeyError(0, 'lock_lost', 'another tab took the refresh lock')
      : error;
  }

  /** Runs `job` while no other tab refreshes, logs in or out (cookie changes are serialized). */
  function exclusive(job) {
    return locks ? withLock(job) : job();
  }

  /** Takes the lock for a refresh, noting whether another tab had it first. */
  async function lockedRefresh(stale, started) {
    if (!locks) return underLock(stale, started, false);
    const name = LOCK_PREFIX + base;
    const now = await locks
      .request(name, { ifAvailable: true }, async (lock) =>
        lock ? { token: await underLock(stale, started, false) } : null,
      )
      .catch((error) => {
        throw lockLost(error);
      });
    return now ? now.token : withLock(() => underLock(stale, started, true));
  }

  /** One refresh for the whole tab, and one at a time across tabs. */
  function refresh(stale = access?.token ?? null) {
    if (!inflight) {
      const started = epoch;
      const run = lockedRefresh(stale, started);
      inflight = run.finally(() => {
        inflight = null;
      });
    }
    return inflight;
  }

  async function ensureToken() {
    if (fresh(access)) return access.token;
    if (access === null && !readCsrf()) throw loginRequired();
    try {
      return await refresh(access?.token ?? null);
    } catch (error) {
      // A proactive refresh that failed for want of a network can still use
      // the token it meant to replace while that one lasts.
      const transient = error.status === 0 || error.status >= 500;
      if (transient && access && access.expiresAt > Date.now()) return access.token;
      throw error;
    }
  }

  function authorized(input, init, token) {
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    headers.set('Authorization', `Bearer ${token}`);
    return { ...init, headers };
  }

  /** fetch() with the access token: refreshed ahead of expiry, and once on a 401. */
  async function authFetch(input, init = {}) {
    let token = await ensureToken();
    const retryable = !(typeof ReadableStream === 'function' && init.body instanceof ReadableStream);
    const first = input instanceof Request ? input.clone() : input;
    const resp = await fetchImpl(first, authorized(input, init, token));
    if (resp.status !== 401 || !retryable) return resp;
    token = await refresh(token);
    return fetchImpl(input, authorized(input, init, token));
  }

  async function api(path, { method = 'GET', body } = {}) {
    const init = { method, cache: 'no-store', headers: {} };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await authFetch(base + path, init);
    } catch (error) {
      if (error instanceof LatchkeyError) throw error;
      throw new LatchkeyError(0, 'network_error', String(error?.message ?? error));
    }
    if (!resp.ok) throw await errorOf(resp);
    return resp.status === 204 ? null : resp.json();
  }

  /** A Bearer call that changes the cookie, so it must not overlap another tab's refresh. */
  async function cookieChanging(path, body) {
    let token = await ensureToken();
    for (let attempt = 0; ; attempt += 1) {
      const headers = { Authorization: `Bearer ${token}` };
      const resp = await exclusive(() => send(path, { headers, body }));
      if (resp.status === 401 && attempt === 0) {
        token = await refresh(token);
        continue;
      }
      if (!resp.ok) throw await errorOf(resp);
      return resp.status === 204 ? null : resp.json();
    }
  }

  async function startSession(path, payload) {
    const resp = await exclusive(() => send(path, { body: { ...payload, cookie: true } }));
    if (!resp.ok) throw await errorOf(resp);
    const body = await resp.json();
    // Registered, but the address must be verified before a session starts.
    if (resp.status === 202) return body;
    writeDevice(body.device_token);
    epoch += 1;
    adopt(body);
    post(shared('login'));
    emit('login', { sessionId: access.sessionId, user: body.user ?? null, source: 'local' });
    emit('token', { expiresAt: access.expiresAt, source: 'login' });
    return body;
  }

  /** A call that needs no session (the links mailed to the user). */
  async function publicCall(path, body) {
    const resp = await send(path, { body, credentials: 'omit' });
    if (!resp.ok) throw await errorOf(resp);
    return resp.status === 204 ? null : resp.json();
  }

  function onMessage(data) {
    if (!data || typeof data !== 'object') return;
    if (data.type === 'token' || data.type === 'login') {
      if (typeof data.access_token !== 'string' || !(data.expires_at > Date.now())) return;
      const wasOut = access === null;
      if (data.type === 'login') epoch += 1;
      hold(data.access_token, data.expires_at, data.session_id);
      if (typeof data.csrf_token === 'string') memoryCsrf = data.csrf_token;
      if (data.type === 'login' || wasOut) {
        emit('login', { sessionId: access.sessionId, user: null, source: 'broadcast' });
      }
      emit('token', { expiresAt: access.expiresAt, source: 'broadcast' });
    } else if (data.type === 'logout' || data.type === 'expired') {
      // An old session ending says nothing about a newer one held here.
      if (data.session_id && access?.sessionId && data.session_id !== access.sessionId) return;
      const had = access !== null || readCsrf() !== null || memoryCsrf !== null;
      epoch += 1;
      access = null;
      memoryCsrf = null;
      if (data.type === 'expired') emit('session-expired', { error: null });
      if (had) emit('logout', { reason: data.reason ?? data.type, source: 'broadcast' });
    }
  }
  if (bus) {
    bus.onmessage = (event) => {
      onMessage(event.data);
      for (const wake of [...waiters]) wake();
    };
  }

  return {
    /**
     * Creates an account and logs in; resolves to the new user. Where the
     * server requires a verified address first, it resolves to null and no
     * session starts (`isLoggedIn()` stays false) until the mailed link is
     * followed.
     */
    async register({ email, password, name, locale } = {}) {
      const payload = { email, password };
      if (name) payload.name = name;
      if (locale) payload.locale = locale;
      const body = await startSession('/v1/register', payload);
      return body.user ?? null;
    },

    /**
     * Logs in; resolves to the user. An account with two-step sign-in
     * rejects with code `mfa_required` and the challenge in `mfaToken`:
     * finish with `verifyMfa()`.
     */
    async login({ email, password } = {}) {
      const payload = { email, password };
      const device = readDevice();
      if (device) payload.device_token = device;
      const body = await startSession('/v1/login', payload);
      return body.user ?? api('/v1/me');
    },

    /**
     * The second step of a sign-in: the `mfaToken` of the `mfa_required`
     * error and a code from the authenticator app, a `recoveryCode`, or
     * `passkey: true` to use one of the account's passkeys; resolves to the
     * user.
     */
    async verifyMfa({ mfaToken, code, recoveryCode, passkey } = {}) {
      const payload = { mfa_token: mfaToken };
      if (code !== undefined) payload.code = code;
      if (recoveryCode !== undefined) payload.recovery_code = recoveryCode;
      if (passkey) {
        const ceremony = await publicCall('/v1/login/mfa/passkey/options', { mfa_token: mfaToken });
        const credential = await navigator.credentials.get({ publicKey: requestOptions(ceremony.options.publicKey) });
        payload.passkey = { token: ceremony.token, credential: credentialJSON(credential) };
      }
      const body = await startSession('/v1/login/mfa', payload);
      return body.user ?? api('/v1/me');
    },

    /**
     * Signs in with a passkey alone: the browser offers the passkeys it holds
     * for this site (no address typed); resolves to the user.
     */
    async signInWithPasskey() {
      const ceremony = await publicCall('/v1/login/passkey/options', {});
      const credential = await navigator.credentials.get({ publicKey: requestOptions(ceremony.options.publicKey) });
      const payload = { token: ceremony.token, credential: credentialJSON(credential) };
      const device = readDevice();
      if (device) payload.device_token = device;
      const body = await startSession('/v1/login/passkey', payload);
      return body.user ?? api('/v1/me');
    },

    /**
     * Registers a passkey on this device for the logged-in user (needs a
     * recent sign-in); resolves to it (`{ id, name, … }`).
     */
    async registerPasskey({ name } = {}) {
      const ceremony = await api('/v1/passkeys/register/options', { method: 'POST' });
      const credential = await navigator.credentials.create({ publicKey: creationOptions(ceremony.options.publicKey) });
      const body = { token: ceremony.token, credential: credentialJSON(credential) };
      if (name !== undefined) body.name = name;
      return api('/v1/passkeys', { method: 'POST', body });
    },

    /** The user's passkeys. */
    async passkeys() {
      return (await api('/v1/passkeys')).passkeys;
    },

    /** Renames one of the user's passkeys. */
    async renamePasskey(id, name) {
      await api(`/v1/passkeys/${encodeURIComponent(id)}`, { method: 'PATCH', body: { name } });
    },

    /** Removes one of the user's passkeys (needs a recent sign-in). */
    async removePasskey(id) {
      await api(`/v1/passkeys/${encodeURIComponent(id)}`, { method: 'DELETE' });
    },

    /** The user's second factors: `{ totp, totp_pending, recovery_codes_left }`. */
    mfa() {
      return api('/v1/mfa');
    },

    /**
     * Starts an authenticator-app enrolment (needs a recent sign-in):
     * `{ secret, otpauth_uri, qr_svg }`; nothing changes until `confirmTotp()`.
     */
    enrolTotp() {
      return api('/v1/mfa/totp', { method: 'POST' });
    },

    /** Confirms the enrolment with a first code; resolves to the recovery codes, shown once. */
    async confirmTotp({ code } = {}) {
      return (await api('/v1/mfa/totp/confirm', { method: 'POST', body: { code } })).recovery_codes;
    },

    /** Turns two-step sign-in off (needs a recent sign-in). */
    async disableTotp() {
      await api('/v1/mfa/totp', { method: 'DELETE' });
    },

    /** New recovery codes, the old ones void (needs a recent sign-in). */
    async regenerateRecoveryCodes() {
      return (await api('/v1/mfa/recovery-codes', { method: 'POST' })).recovery_codes;
    },

    /** Ends this session (server and every tab). Local state is dropped even if the server cannot be reached. */
    async logout() {
      const csrf = readCsrf();
      let failure = null;
      try {
        const headers = csrf ? { 'X-CSRF-Token': csrf } : access ? { Authorization: `Bearer ${access.token}` } : null;
        const resp = headers ? await exclusive(() => send('/v1/logout', { headers })) : null;
        if (resp && !resp.ok) {
          const error = await errorOf(resp);
          if (error.code !== 'invalid_grant') failure = error;
        }
      } catch (error) {
        failure = error;
      }
      end('logout');
      if (failure) throw failure;
    },

    /** Ends every session of the user, on every device. */
    async logoutAll() {
      await cookieChanging('/v1/logout-all');
      end('logout-all');
    },

    /** Changes the password; this tab moves to the fresh session the server starts, every other one ends. */
    async changePassword({ currentPassword, newPassword } = {}) {
      const body = await cookieChanging('/v1/me/password', {
        current_password: currentPassword,
        new_password: newPassword,
        cookie: true,
      });
      epoch += 1;
      adopt(body);
      post(shared('login'));
      emit('token', { expiresAt: access.expiresAt, source: 'password' });
    },

    /** Mails a password reset link; the answer is the same whether or not the address has an account. */
    async requestPasswordReset({ email } = {}) {
      await publicCall('/v1/password-reset', { email });
    },

    /** Sets a new password with the token of a reset link; every session of the account ends. */
    async resetPassword({ token, newPassword } = {}) {
      await publicCall('/v1/password-reset/confirm', { token, new_password: newPassword });
    },

    /** Verifies the address with the token of a verification link; resolves to the user. */
    verifyEmail({ token } = {}) {
      return publicCall('/v1/verify-email', { token });
    },

    /** Mails a new verification link to an address (for accounts that cannot sign in yet). */
    async requestVerification({ email } = {}) {
      await publicCall('/v1/verify-email/request', { email });
    },

    /** Mails the logged-in user a new verification link. */
    async resendVerification() {
      await api('/v1/me/verify-email', { method: 'POST' });
    },

    /** Asks to move the account to `newEmail`; a link to that address confirms. */
    async changeEmail({ password, newEmail } = {}) {
      await api('/v1/me/email', { method: 'POST', body: { password, new_email: newEmail } });
    },

    /** Confirms a new address with the token of the link sent to it; resolves to the user. */
    confirmEmailChange({ token } = {}) {
      return publicCall('/v1/email-change/confirm', { token });
    },

    /** Undoes an email change with the token of the link sent to the old address; every session ends. */
    cancelEmailChange({ token } = {}) {
      return publicCall('/v1/email-change/cancel', { token });
    },

    /** The user's sessions (`current` marks this device's). */
    async sessions() {
      return (await api('/v1/sessions')).sessions;
    },

    /** Revokes one session; revoking this device's own logs this client out. */
    async revokeSession(id) {
      await api(`/v1/sessions/${encodeURIComponent(id)}`, { method: 'DELETE' });
      if (access && id === access.sessionId) end('revoked');
    },

    /**
     * Proves the password again (step-up), for revoking other sessions or
     * logging out everywhere once the sign-in is older than the server's
     * `reauth_max_age`; the session stays, with a fresh access token. With
     * two-step sign-in on, send `code` (or `recoveryCode`) too.
     */
    async reauthenticate({ password, code, recoveryCode } = {}) {
      const payload = { password };
      if (code !== undefined) payload.code = code;
      if (recoveryCode !== undefined) payload.recovery_code = recoveryCode;
      const body = await api('/v1/reauthenticate', { method: 'POST', body: payload });
      adopt(body);
      post(shared('token'));
      emit('token', { expiresAt: access.expiresAt, source: 'reauthenticate' });
    },

    /** The logged-in user. */
    me() {
      return api('/v1/me');
    },

    /**
     * The user's security events, newest first: `{ events, next_before }`;
     * pass `next_before` as `before` for the next page.
     */
    events({ before, limit } = {}) {
      const query = new URLSearchParams();
      if (before !== undefined) query.set('before', String(before));
      if (limit !== undefined) query.set('limit', String(limit));
      const qs = query.toString();
      return api(`/v1/me/events${qs ? `?${qs}` : ''}`);
    },

    /** fetch() for your own APIs, with `Authorization: Bearer`. */
    fetch: authFetch,

    /** A usable access token, refreshed if needed; null when logged out. */
    async accessToken() {
      try {
        return await ensureToken();
      } catch (error) {
        if (error.code === 'login_required' || error.code === 'invalid_grant' || error.code === 'csrf_failed') return null;
        throw error;
      }
    },

    /** Whether the client holds a session it can use or silently resume. */
    isLoggedIn() {
      return (access !== null && access.expiresAt > Date.now()) || Boolean(readCsrf());
    },

    /** After a page load: resumes the session from the cookie if there is one. */
    async resume() {
      if (fresh(access)) return true;
      if (!readCsrf()) return false;
      try {
        await refresh(access?.token ?? null);
        return true;
      } catch (error) {
        if (error.status === 0 || error.status >= 500) throw error;
        return false;
      }
    },

    /** Forces a refresh now (shared with any in flight); resolves to the access token. */
    refresh() {
      if (access === null && !readCsrf()) return Promise.reject(loginRequired());
      return refresh(access?.token ?? null);
    },

    /** The current session's id, if any. */
    sessionId() {
      return access?.sessionId ?? null;
    },

    /** Subscribes to `login`, `logout`, `session-expired` or `token`; returns the unsubscribe function. */
    on(event, handler) {
      const set = listeners.get(event);
      if (!set) throw new TypeError(`unknown event ${event}; one of ${EVENTS.join(', ')}`);
      set.add(handler);
      return () => set.delete(handler);
    },

    /** Stops listening to other tabs. */
    close() {
      bus?.close();
    },
  };
}
