"""Settings of the peer that bench/compare.sh measures Latchkey against.

Configured as a careful user of djoser + djangorestframework-simplejwt would:
refresh-token rotation with a blacklist, Argon2id with Latchkey's default
cost, SQLite in WAL mode (or PostgreSQL through psycopg when
PEER_DATABASE_URL is set), DEBUG off. It is a benchmark fixture, never a
deployment: the secret key and the data directory come from the environment.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured


def _env(name):
    try:
        return os.environ[name]
    except KeyError:
        raise ImproperlyConfigured(f"set {name} (bench/compare.sh does)") from None


SECRET_KEY = _env("PEER_SECRET_KEY")
DATA_DIR = Path(_env("PEER_DATA_DIR"))

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "djoser",
    "simplejwt_site.accounts",
]

# An API served to token-holding clients needs no sessions, CSRF or messages;
# fewer middlewares only make the peer faster.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "simplejwt_site.urls"
WSGI_APPLICATION = "simplejwt_site.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# WAL and synchronous=FULL are what Latchkey's SQLite store uses; IMMEDIATE
# transactions take the write lock up front, so a read-then-write (the
# blacklist check, then the rotation) waits on the busy timeout instead of
# failing with "database is locked" when the five workers write at once.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
        "CONN_MAX_AGE": 600,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        },
    }
}

# bench/compare.sh --database postgres: the same data on the local PostgreSQL
# through psycopg 3, connections kept as above.
if os.environ.get("PEER_DATABASE_URL"):
    _url = urlsplit(os.environ["PEER_DATABASE_URL"])
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
        "CONN_MAX_AGE": 600,
    }

# Latchkey's defaults: Argon2id, 19 MiB, two passes, one lane.
PASSWORD_HASHERS = ["simplejwt_site.hashers.LatchkeyCostArgon2PasswordHasher"]

# The validators `startproject` writes; Latchkey checks new passwords too.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=5),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}

DJOSER = {
    "LOGIN_FIELD": "email",
    "USER_CREATE_PASSWORD_RETYPE": False,
    # JWT only: no DRF auth tokens to delete with the user (djoser's default
    # model, rest_framework.authtoken, is not installed).
    "TOKEN_MODEL": None,
}
