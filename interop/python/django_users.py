"""A real Django project's users, made through djoser, for the import tests.

Runs in the djoser peer's venv (bench/peer/.venv: the peer's exact versions).
Creates the database of a minimal Django project (django.contrib.auth with
djoser's URLs), migrates it, and registers each user given as JSON on
standard input with djoser's `POST /auth/users/`, the hasher named for the
user first in PASSWORD_HASHERS — so each hash is the one Django writes with
that hasher. Formats Django 5.2 no longer writes ("argon2i", "unsalted_md5",
"unsalted_sha1": `argon2$argon2i$…`, a bare MD5 digest, `sha1$$…`), unusable
passwords (password null) and inactive users are then set as older versions
or an admin would. Prints the users as stored.

Input: [{"username", "email", "password", "hasher", "first_name",
"last_name", "is_active"}].

    python django_users.py --database sqlite:///tmp/db.sqlite3 < users.json
    python django_users.py --database postgres://root@127.0.0.1/db < users.json
"""

import argparse
import hashlib
import json
import sys
from urllib.parse import urlparse

import django
from django.conf import settings

HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.BCryptPasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]


def database(url):
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.path.lstrip("/"),
        "USER": parsed.username or "postgres",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.hostname or "127.0.0.1",
        "PORT": str(parsed.port or 5432),
    }


def argon2i(password):
    """The hash Django's Argon2PasswordHasher wrote before argon2id."""
    from argon2 import low_level

    encoded = low_level.hash_secret(
        password.encode(),
        b"importsaltimport",
        time_cost=2,
        memory_cost=512,
        parallelism=2,
        hash_len=16,
        type=low_level.Type.I,
    )
    return "argon2" + encoded.decode()


# Django's algorithm names, by the hasher class that writes them.
NAMES = {
    "pbkdf2_sha256": "PBKDF2PasswordHasher",
    "pbkdf2_sha1": "PBKDF2SHA1PasswordHasher",
    "argon2": "Argon2PasswordHasher",
    "bcrypt_sha256": "BCryptSHA256PasswordHasher",
    "bcrypt": "BCryptPasswordHasher",
    "scrypt": "ScryptPasswordHasher",
    "md5": "MD5PasswordHasher",
}

OLD = {
    "argon2i": argon2i,
    "unsalted_md5": lambda p: hashlib.md5(p.encode()).hexdigest(),
    "unsalted_sha1": lambda p: "sha1$$" + hashlib.sha1(p.encode()).hexdigest(),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    settings.configure(
        SECRET_KEY="the import tests only",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "rest_framework",
            "djoser",
        ],
        DATABASES={"default": database(args.database)},
        PASSWORD_HASHERS=HASHERS,
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        DJOSER={"TOKEN_MODEL": None},
    )
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import override_settings
    from rest_framework.test import APIClient

    from django.urls import include, path

    urlpatterns.append(path("auth/", include("djoser.urls")))
    call_command("migrate", verbosity=0)
    User = get_user_model()
    client = APIClient()
    stored = []
    for spec in json.load(sys.stdin):
        password, hasher = spec.get("password"), spec.get("hasher")
        first = [h for h in HASHERS if h.endswith(f".{NAMES.get(hasher, '')}")]
        with override_settings(PASSWORD_HASHERS=first + HASHERS):
            answer = client.post(
                "/auth/users/",
                {
                    "username": spec["username"],
                    "email": spec["email"],
                    "password": password or "a placeholder password 1",
                },
                format="json",
            )
        assert answer.status_code == 201, (answer.status_code, answer.content)
        user = User.objects.get(username=spec["username"])
        user.first_name = spec.get("first_name", "")
        user.last_name = spec.get("last_name", "")
        user.is_active = spec.get("is_active", True)
        if password is None:
            user.set_unusable_password()
        elif hasher in OLD:
            user.password = OLD[hasher](password)
        user.save()
        stored.append({"email": user.email, "password": user.password})
    json.dump(stored, sys.stdout)


# djoser's URLs, filled in once Django is set up (they import its settings).
urlpatterns = []

if __name__ == "__main__":
    main()
