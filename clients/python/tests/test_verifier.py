"""latchkey_verify.Verifier on its own: the checks, and the feed failing closed."""

import time

import pytest

from conftest import AUDIENCE, CLIENT_ID, ISSUER
from latchkey_verify import InvalidToken, Verifier


def test_without_credentials_a_token_verifies_offline(session):
    claims = Verifier(ISSUER, AUDIENCE).verify(session["access_token"])
    assert claims["sub"] == session["sub"]
    assert claims["sid"]


def test_another_audience_or_issuer_is_refused(session):
    with pytest.raises(InvalidToken):
        Verifier(ISSUER, "https://other.example.com").verify(session["access_token"])
    other = Verifier(ISSUER, AUDIENCE)
    other.issuer = "https://other.example.com"
    with pytest.raises(InvalidToken):
        other.verify(session["access_token"])


def test_a_feed_that_cannot_be_read_refuses_every_token(session):
    # Wrong credentials: the feed is never read, so nothing can be vouched for.
    verifier = Verifier(
        ISSUER, AUDIENCE, client_id=CLIENT_ID, client_secret="wrong", poll_interval=0.2
    )
    time.sleep(0.5)
    with pytest.raises(InvalidToken, match="not current"):
        verifier.verify(session["access_token"])
    verifier.feed.stop()
