"""Flask with Latchkey access tokens, in place of flask-jwt-extended.

    app.config.update(LATCHKEY_ISSUER="https://auth.example.com",
                      LATCHKEY_AUDIENCE="https://api.example.com",
                      LATCHKEY_CLIENT_ID="…", LATCHKEY_CLIENT_SECRET="…")
    Latchkey(app)

    @app.get("/orders")
    @token_required
    def orders():
        return {"user": current_claims()["sub"]}

A refused or missing token answers 401 `{"error": "invalid_token", ...}`
with `WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar, cast

from flask import Flask, current_app, g, jsonify

from . import InvalidToken, Verifier

F = TypeVar("F", bound=Callable[..., Any])


class Latchkey:
    """The extension: one verifier per app, from its `LATCHKEY_*` config."""

    def __init__(self, app: Optional[Flask] = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        conf = app.config
        app.extensions["latchkey"] = Verifier(
            conf["LATCHKEY_ISSUER"],
            conf.get("LATCHKEY_AUDIENCE", conf["LATCHKEY_ISSUER"]),
            client_id=conf.get("LATCHKEY_CLIENT_ID"),
            client_secret=conf.get("LATCHKEY_CLIENT_SECRET"),
            poll_interval=conf.get("LATCHKEY_POLL_INTERVAL", 2.0),
            max_staleness=conf.get("LATCHKEY_MAX_STALENESS", 30.0),
        )


def _refuse(description: str) -> Any:
    response = jsonify(error="invalid_token", error_description=description)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def token_required(view: F) -> F:
    """Lets the view run only with a valid, unrevoked access token."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from flask import request

        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _refuse("an access token is required")
        try:
            g.latchkey_claims = current_app.extensions["latchkey"].verify(token.strip())
        except InvalidToken as error:
            return _refuse(str(error))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def current_claims() -> dict[str, Any]:
    """The claims of the request's token (inside a `token_required` view)."""
    return cast(dict[str, Any], g.latchkey_claims)
