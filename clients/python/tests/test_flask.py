"""Flask with latchkey_verify.flask."""

from flask import Flask

from conftest import (
    AUDIENCE, CLIENT_ID, CLIENT_SECRET, ISSUER, POLL_INTERVAL, forged, post, refused_within, unsigned,
)
from latchkey_verify.flask import Latchkey, current_claims, token_required

app = Flask(__name__)
app.config.update(
    LATCHKEY_ISSUER=ISSUER,
    LATCHKEY_AUDIENCE=AUDIENCE,
    LATCHKEY_CLIENT_ID=CLIENT_ID,
    LATCHKEY_CLIENT_SECRET=CLIENT_SECRET,
    LATCHKEY_POLL_INTERVAL=POLL_INTERVAL,
)
Latchkey(app)


@app.get("/orders")
@token_required
def orders():
    return {"user": current_claims()["sub"]}


def call(token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().get("/orders", headers=headers)


def test_a_valid_token_reaches_the_view(session):
    response = call(session["access_token"])
    assert response.status_code == 200
    assert response.get_json()["user"] == session["sub"]


def test_forged_unsigned_and_missing_tokens_are_refused(session):
    for token in (forged(session["access_token"]), unsigned(session["access_token"]), None):
        response = call(token)
        assert response.status_code == 401
        assert response.get_json()["error"] == "invalid_token"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_logged_out_sessions_token_is_refused_within_the_poll_interval(session):
    token = session["access_token"]
    assert call(token).status_code == 200
    assert post("/v1/logout", token=token)[0] == 204
    took = refused_within(lambda: call(token).status_code, POLL_INTERVAL + 5)
    print(f"refused by the Flask view {took:.2f} s after the logout (poll {POLL_INTERVAL} s)")
