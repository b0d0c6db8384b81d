// Type declarations for latchkey.js, the Latchkey browser client (cookie mode).

/** An error answered by Latchkey (`{"error", "error_description"}`), or status 0 when it could not be reached. */
export class LatchkeyError extends Error {
  constructor(status: number, code: string, description?: string);
  readonly name: 'LatchkeyError';
  /** HTTP status; 0 for a network failure or an unreadable answer. */
  readonly status: number;
  /** The `error` code, e.g. `invalid_grant`, `csrf_failed`, `weak_password`; `login_required` when the client holds no session; `network_error`, `timeout` (no answer within `refreshTimeout`) and `lock_lost` (another tab took the refresh lock from this stalled one) with status 0. */
  readonly code: string;
  /** The server's `error_description`. */
  readonly description: string;
  /** True when this failure ended the session (the `session-expired` and `logout` events have fired). */
  sessionEnded: boolean;
  /** With code `mfa_required` (the password was right; a second factor is owed): the challenge for `verifyMfa()`. */
  mfaToken: string | null;
  /** With code `mfa_required`: what the second step takes (`totp`, `recovery_code`, and `passkey` when the account has one). */
  methods: string[] | null;
}

export interface Passkey {
  /** The credential id (base64url). */
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  /** A synced passkey, which may be copied to the user's other devices. */
  backup_eligible: boolean;
  backed_up: boolean;
}

export interface MfaStatus {
  /** Two-step sign-in with an authenticator app is on. */
  totp: boolean;
  /** An enrolment waits for its first code. */
  totp_pending: boolean;
  recovery_codes_left: number;
}

export interface TotpEnrolment {
  /** The secret in base 32, for typing in. */
  secret: string;
  otpauth_uri: string;
  /** The URI as a QR code: an SVG document. */
  qr_svg: string;
}

export interface User {
  id: string;
  email: string;
  name: string | null;
  email_verified: boolean;
  created_at: string;
}

export interface Session {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  /** The device as people read it, e.g. "Chrome 156 on Linux", when the user agent is recognised. */
  device: string | null;
  /** The raw User-Agent header the session started with. */
  user_agent: string | null;
  ip: string | null;
  /** The session of this device. */
  current: boolean;
}

/** Where an event came from: this tab, or another tab of the same browser over the BroadcastChannel. */
export type EventSource = 'local' | 'broadcast';

export interface LatchkeyEvents {
  login: { sessionId: string | null; user: User | null; source: EventSource };
  /** `reason`: 'logout' | 'logout-all' | 'revoked' | 'expired' (after `session-expired`). */
  logout: { reason: string; source: EventSource };
  /** A refresh was refused (`invalid_grant`: expired, revoked or reused session; or `csrf_failed`); `error` is null when heard from another tab. */
  'session-expired': { error: LatchkeyError | null };
  /** A new access token; `source` says how it came. */
  token: { expiresAt: number; source: 'login' | 'refresh' | 'password' | 'reauthenticate' | 'broadcast' };
}

/** Just the part of the Web Locks API the client uses. */
export interface LockManagerLike {
  request<T>(name: string, callback: (lock: unknown) => Promise<T> | T): Promise<T>;
  request<T>(
    name: string,
    options: { ifAvailable?: boolean; steal?: boolean; signal?: AbortSignal },
    callback: (lock: unknown) => Promise<T> | T,
  ): Promise<T>;
}

export interface BroadcastChannelLike {
  postMessage(message: unknown): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  close(): void;
}

export interface ClientOptions {
  /** The Latchkey server, e.g. `https://auth.example.com`. Its LATCHKEY_CORS_ORIGINS must list this page's origin. */
  baseUrl: string;
  /** Where the CSRF token is kept between page loads (per baseUrl). Default `localStorage`; null keeps it in memory only (no silent resume after a reload). */
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  /** For tests: the fetch to use. */
  fetch?: typeof fetch;
  /** Cross-tab refresh lock. Default `navigator.locks`; null disables it (the server's grace window then has to absorb races). */
  locks?: LockManagerLike | null;
  /** Cross-tab channel factory. Default `name => new BroadcastChannel(name)`; null disables sharing. */
  channel?: ((name: string) => BroadcastChannelLike) | null;
  /** Seconds before expiry at which `fetch` refreshes ahead of time (at most a quarter of the token's life). Default 30. */
  leeway?: number;
  /** Milliseconds a refresh request may take before it fails with `timeout` (status 0). Default 10 000. */
  refreshTimeout?: number;
  /** Milliseconds to wait for another tab's refresh before taking the lock from it (that tab is frozen or stuck; a closed tab's lock is freed at once). Must exceed `refreshTimeout`. Default 15 000. */
  lockTimeout?: number;
}

/** One security event of the user. */
export interface SecurityEvent {
  id: number;
  /** e.g. `login`, `login_failed`, `refresh_reuse`, `password_changed`. */
  kind: string;
  session_id: string | null;
  ip: string | null;
  /** The device as people read it, e.g. "Chrome 156 on Linux". */
  device: string | null;
  user_agent: string | null;
  created_at: string;
}

export interface SecurityEventPage {
  events: SecurityEvent[];
  /** Pass as `before` for the next (older) page; absent on the last page. */
  next_before?: number;
}

export interface LatchkeyClient {
  /** Creates an account and logs in (cookie mode); resolves to the new user. When the server requires a verified address first, it resolves to null and no session starts (`isLoggedIn()` stays false) until the mailed link is followed. `locale` (e.g. `fr`) picks the language of the user's mail. */
  register(input: { email: string; password: string; name?: string; locale?: string }): Promise<User | null>;
  /** Logs in (cookie mode); resolves to the user. Sends the device token an earlier login left in `storage`, so strangers' failed guesses never throttle this browser. */
  login(input: { email: string; password: string }): Promise<User>;
  /** The second step of a sign-in, after `login` rejected with `mfa_required`: its `mfaToken` and a code from the authenticator app, or a recovery code; resolves to the user. */
  verifyMfa(input: { mfaToken: string; code: string } | { mfaToken: string; recoveryCode: string } | { mfaToken: string; passkey: true }): Promise<User>;
  /** Signs in with a passkey alone (the browser offers the ones it holds for this site); resolves to the user. */
  signInWithPasskey(): Promise<User>;
  /** Registers a passkey on this device (needs a recent sign-in); `name` defaults to the device's. */
  registerPasskey(input?: { name?: string }): Promise<Passkey>;
  /** The user's passkeys. */
  passkeys(): Promise<Passkey[]>;
  /** Renames one of the user's passkeys. */
  renamePasskey(id: string, name: string): Promise<void>;
  /** Removes one of the user's passkeys (needs a recent sign-in). */
  removePasskey(id: string): Promise<void>;
  /** The user's second factors. */
  mfa(): Promise<MfaStatus>;
  /** Starts an authenticator-app enrolment (needs a recent sign-in); nothing changes until `confirmTotp`. */
  enrolTotp(): Promise<TotpEnrolment>;
  /** Confirms the enrolment with a first code: two-step sign-in is on; resolves to the ten recovery codes, shown once. */
  confirmTotp(input: { code: string }): Promise<string[]>;
  /** Turns two-step sign-in off (needs a recent sign-in). */
  disableTotp(): Promise<void>;
  /** Ten new recovery codes; the old ones stop working (needs a recent sign-in). */
  regenerateRecoveryCodes(): Promise<string[]>;
  /** Ends this session on the server and in every tab. Local state is dropped even when the server cannot be reached (then it throws). */
  logout(): Promise<void>;
  /** Ends every session of the user, on every device. */
  logoutAll(): Promise<void>;
  /** Changes the password: this tab moves to the new session the server starts; every other session ends. */
  changePassword(input: { currentPassword: string; newPassword: string }): Promise<void>;
  /** Mails a password reset link; the same answer whether or not the address has an account. */
  requestPasswordReset(input: { email: string }): Promise<void>;
  /** Sets a new password with the token of a reset link (`#token=` of the link); every session of the account ends. */
  resetPassword(input: { token: string; newPassword: string }): Promise<void>;
  /** Verifies the address with the token of a verification link; resolves to the user. */
  verifyEmail(input: { token: string }): Promise<User>;
  /** Mails a new verification link to an address whose account cannot sign in before verifying. */
  requestVerification(input: { email: string }): Promise<void>;
  /** Mails the logged-in user a new verification link. */
  resendVerification(): Promise<void>;
  /** Asks to move the account to `newEmail` (needs the password); a link to that address confirms. */
  changeEmail(input: { password: string; newEmail: string }): Promise<void>;
  /** Confirms a new address with the token of the link sent to it; resolves to the user. */
  confirmEmailChange(input: { token: string }): Promise<User>;
  /** Undoes an email change with the token of the link sent to the old address; every session ends. */
  cancelEmailChange(input: { token: string }): Promise<User>;
  /** The user's sessions; `current` marks this device's. */
  sessions(): Promise<Session[]>;
  /** Revokes one session; revoking this device's own logs this client out. */
  revokeSession(id: string): Promise<void>;
  /** Proves the password again (step-up) when the server answers `reauthentication_required` to revoking another session, logging out everywhere or changing second factors; with two-step sign-in on, a `code` (or `recoveryCode`) too. The session stays, with a fresh access token. */
  reauthenticate(input: { password: string; code?: string; recoveryCode?: string }): Promise<void>;
  /** The logged-in user. */
  me(): Promise<User>;
  /** The user's security events, newest first, `limit` (1–200, default 50) at a time. */
  events(input?: { before?: number; limit?: number }): Promise<SecurityEventPage>;
  /** `fetch` with `Authorization: Bearer`: refreshes shortly before expiry, and once on a 401 before retrying once. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** A usable access token (refreshed if needed), or null when logged out. */
  accessToken(): Promise<string | null>;
  /** Whether the client holds a session it can use or silently resume. */
  isLoggedIn(): boolean;
  /** After a page load: resumes the session from the cookie; false when there is none. */
  resume(): Promise<boolean>;
  /** Forces a refresh now (shared with any in flight, in this tab or another); resolves to the access token. */
  refresh(): Promise<string>;
  /** The current session's id, once known. */
  sessionId(): string | null;
  /** Subscribes to an event; returns the function that unsubscribes. */
  on<E extends keyof LatchkeyEvents>(event: E, handler: (detail: LatchkeyEvents[E]) => void): () => void;
  /** Stops listening to other tabs. */
  close(): void;
}

export function createClient(options: ClientOptions): LatchkeyClient;
