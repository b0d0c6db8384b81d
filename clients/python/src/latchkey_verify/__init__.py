"""Verify Latchkey access tokens offline, revocation included.

`Verifier` checks a token as strictly as the Rust `latchkey-verify` does:
`typ` at+jwt, no embedded keys, the header's `alg` bound to the JWKS key's,
issuer, audience, `exp`/`nbf`/`iat` with a small leeway, a bounded lifetime.
With resource-server credentials (`latchkey clients add NAME`) it also
follows the revocation feed in a background thread, so a token of a
logged-out session, a disabled user or a withdrawn key is refused within
about the poll interval; when the feed cannot be read for longer than
`max_staleness`, every token is refused (fail closed).

    verifier = Verifier("https://auth.example.com", "https://api.example.com",
                        client_id="…", client_secret="…")
    claims = verifier.verify(token)   # raises InvalidToken

`latchkey_verify.drf` and `latchkey_verify.flask` plug it into Django REST
framework and Flask.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Optional

import jwt
from jwt import PyJWKClient

__all__ = ["InvalidToken", "RevocationFeed", "Verifier"]

ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt"}
REFUSED_HEADERS = {"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"}
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "sid"]


class InvalidToken(Exception):
    """The token must be refused; the message says why (safe to log)."""


class RevocationFeed:
    """Follows `GET {issuer}/v1/revocations` in a daemon thread."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        poll_interval: float = 2.0,
        max_staleness: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = issuer.rstrip("/") + "/v1/revocations"
        credentials = f"{client_id}:{client_secret}".encode()
        self._auth = "Basic " + base64.b64encode(credentials).decode()
        self.poll_interval = poll_interval
        self.max_staleness = max_staleness
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cursor = 0
        self._sessions: set[str] = set()
        self._not_before: dict[str, int] = {}
        self._keys: set[str] = set()
        self._synced_at: Optional[float] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "RevocationFeed":
        """Reads the whole feed once, then follows it in the background: a
        verifier is ready when it is made (as the Rust builder's is)."""
        if self._thread is None:
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the thread keeps trying; until then, closed
                pass
            self._thread = threading.Thread(target=self._run, name="latchkey-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> None:
        """Reads the feed up to its end once (the thread calls it every interval)."""
        while True:
            request = urllib.request.Request(
                f"{self.url}?after={self._cursor}",
                headers={"authorization": self._auth, "accept": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    page = json.load(response)
            except urllib.error.HTTPError as error:
                if error.code == 410:  # cursor_expired: start over from everything kept
                    with self._lock:
                        self._cursor = 0
                        self._sessions.clear()
                        self._not_before.clear()
                    continue
                raise
            with self._lock:
                for entry in page["entries"]:
                    kind = entry.get("kind")
                    if kind == "session":
                        self._sessions.add(entry["sid"])
                    elif kind == "user":
                        sub, nbf = entry["sub"], int(entry["not_before"])
                        self._not_before[sub] = max(nbf, self._not_before.get(sub, 0))
                    elif kind == "key":
                        self._keys.add(entry["kid"])
                self._cursor = max(self._cursor, int(page["next_cursor"]))
                if not page.get("has_more"):
                    self._synced_at = time.monotonic()
                    return

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a failed poll only ages the state
                pass
            self._stop.wait(self.poll_interval)

    def check(self, header: dict[str, Any], claims: dict[str, Any]) -> None:
        """Raises InvalidToken for a revoked token, or when the feed is stale."""
        with self._lock:
            synced = self._synced_at
            if synced is None or time.monotonic() - synced > self.max_staleness:
                raise InvalidToken("the revocation feed is not current")
            if header.get("kid") in self._keys:
                raise InvalidToken("the signing key was withdrawn")
            if claims.get("sid") in self._sessions:
                raise InvalidToken("the session was revoked")
            if int(claims["iat"]) < self._not_before.get(claims["sub"], 0):
                raise InvalidToken("the user's tokens were revoked")


class Verifier:
    """Checks Latchkey access tokens; see the module's documentation."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        poll_interval: float = 2.0,
        max_staleness: float = 30.0,
        leeway: int = 5,
        max_token_lifetime: int = 3600,
        algorithms: tuple[str, ...] = ("EdDSA", "ES256"),
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.leeway = leeway
        self.max_token_lifetime = max_token_lifetime
        self.algorithms = list(algorithms)
        self.jwks = PyJWKClient(f"{self.issuer}/.well-known/jwks.json", timeout=10)
        self.feed: Optional[RevocationFeed] = None
        if client_id and client_secret:
            self.feed = RevocationFeed(
                self.issuer, client_id, client_secret, poll_interval, max_staleness
            ).start()

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unrevoked access token; InvalidToken otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            typ = header.get("typ")
            if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
                raise InvalidToken("typ is not at+jwt")
            refused = REFUSED_HEADERS.intersection(header)
            if refused:
                raise InvalidToken(f"header member not accepted: {sorted(refused)}")
            key = self.jwks.get_signing_key_from_jwt(token)
            if header.get("alg") != key.algorithm_name:
                raise InvalidToken("alg does not match the key's")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None
        if int(claims["exp"]) - int(claims["iat"]) > self.max_token_lifetime:
            raise InvalidToken("the token claims a longer lifetime than allowed")
        if self.feed is not None:
            self.feed.check(header, claims)
        return claims
