"""Django REST framework authentication with Latchkey access tokens.

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["latchkey_verify.drf.LatchkeyAuthentication"],
    }
    LATCHKEY = {
        "ISSUER": "https://auth.example.com",
        "AUDIENCE": "https://api.example.com",
        "CLIENT_ID": "…", "CLIENT_SECRET": "…",   # follow the revocation feed
        "USER_FIELD": "username",                   # request.user: the Django user whose
        "USER_CLAIM": "sub",                        # USER_FIELD equals the token's USER_CLAIM
    }

Without `USER_FIELD`, `request.user` is a `TokenUser` made from the claims
(no database query), as simplejwt's stateless authentication gives.
`request.auth` is the claims. A missing token leaves the request anonymous
(DRF's permissions decide); a refused one answers 401.
"""

from __future__ import annotations

from typing import Any, Optional

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from . import InvalidToken, Verifier

_verifier: Optional[Verifier] = None


def verifier() -> Verifier:
    """The process's verifier, made from `settings.LATCHKEY` on first use."""
    global _verifier
    if _verifier is None:
        conf = settings.LATCHKEY
        _verifier = Verifier(
            conf["ISSUER"],
            conf.get("AUDIENCE", conf["ISSUER"]),
            client_id=conf.get("CLIENT_ID"),
            client_secret=conf.get("CLIENT_SECRET"),
            poll_interval=conf.get("POLL_INTERVAL", 2.0),
            max_staleness=conf.get("MAX_STALENESS", 30.0),
        )
    return _verifier


class TokenUser:
    """The user a token names, without a database row."""

    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        self.id = self.pk = claims["sub"]

    def __str__(self) -> str:
        return f"TokenUser {self.id}"


class LatchkeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <Latchkey access token>`."""

    def authenticate(self, request: Any) -> Optional[tuple[Any, dict[str, Any]]]:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid Authorization header.")
        try:
            claims = verifier().verify(parts[1].decode("ascii"))
        except (InvalidToken, UnicodeDecodeError) as error:
            raise AuthenticationFailed(f"Invalid token: {error}") from None
        return self.user_for(claims), claims

    def user_for(self, claims: dict[str, Any]) -> Any:
        conf = settings.LATCHKEY
        field = conf.get("USER_FIELD")
        if not field:
            return TokenUser(claims)
        from django.contrib.auth import get_user_model

        model = get_user_model()
        try:
            user = model.objects.get(**{field: claims[conf.get("USER_CLAIM", "sub")]})
        except model.DoesNotExist:
            raise AuthenticationFailed("No user matches the token.") from None
        if not user.is_active:
            raise AuthenticationFailed("The user is inactive.")
        return user

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'
