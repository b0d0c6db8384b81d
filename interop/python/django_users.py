"""A real Django project's user table, for the import tests of Latchkey.

Creates the database of a minimal Django project (django.contrib.auth, the
versions of the peer in bench/peer), migrates it, and adds the users given
as JSON on standard input, each password hashed by the Django hasher named
for it, as `User.set_password` (what djoser's registration calls) would
with that hasher first in PASSWORD_HASHERS. Prints the users as stored.

Input: [{"username", "email", "password" (null: unusable), "hasher",
"first_name", "last_name", "is_active"}]. The hashers "argon2i",
"unsalted_md5" and "unsalted_sha1" make the hashes older Django versions
wrote (`argon2$argon2i$…`, a bare MD5 digest, `sha1$$…`).

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
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
        DATABASES={"default": database(args.database)},
        PASSWORD_HASHERS=HASHERS,
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    User = get_user_model()
    stored = []
    for spec in json.load(sys.stdin):
        user = User(
            username=spec["username"],
            email=spec["email"],
            first_name=spec.get("first_name", ""),
            last_name=spec.get("last_name", ""),
            is_active=spec.get("is_active", True),
        )
        password, hasher = spec.get("password"), spec.get("hasher")
        if password is None:
            user.set_unusable_password()
        elif hasher in OLD:
            user.password = OLD[hasher](password)
        else:
            user.password = make_password(password, hasher=hasher)
        user.save()
        stored.append({"email": user.email, "password": user.password})
    json.dump(stored, sys.stdout)


if __name__ == "__main__":
    main()
