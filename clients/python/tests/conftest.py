"""The tests talk to a real Latchkey server, which the Rust test suite starts
(crates/latchkey/tests/api/python_package.rs) and names in the environment."""

import json
import os
import time
import urllib.error
import urllib.request
import uuid

import pytest

ISSUER = os.environ["LATCHKEY_TEST_ISSUER"]
AUDIENCE = os.environ["LATCHKEY_TEST_AUDIENCE"]
CLIENT_ID = os.environ["LATCHKEY_TEST_CLIENT_ID"]
CLIENT_SECRET = os.environ["LATCHKEY_TEST_CLIENT_SECRET"]
POLL_INTERVAL = 0.5


def post(path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(ISSUER + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as error:
        return error.code, None


@pytest.fixture
def session():
    """A new user's first session: its tokens and user id."""
    email = f"py-{uuid.uuid4().hex[:12]}@example.com"
    status, body = post("/v1/register", {"email": email, "password": "violet kettle harbour 41"})
    assert status == 201, status
    import jwt

    body["sub"] = jwt.decode(body["access_token"], options={"verify_signature": False})["sub"]
    return body


def forged(token):
    """The token with its signature altered."""
    head, claims, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return ".".join([head, claims, flipped])


def unsigned(token):
    """The token's claims under `alg: none`."""
    import base64

    _, claims, _ = token.split(".")
    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    return f"{head}.{claims}."


def refused_within(call, limit):
    """Seconds until `call()` answers 401, polling; fails past `limit`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if call() == 401:
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"still accepted after {limit} s")
