"""What a sign-in costs with a password hash imported from Django.

    interop/python/.venv/bin/python bench/imported_hashes.py [--binary target/release/latchkey] [--count 10]

Makes a Django project's database, its users registered through djoser with
Django's own hashers at their default costs (interop/python/django_users.py,
run in bench/peer/.venv: PBKDF2-SHA256 at 1,000,000
rounds, Argon2id, bcrypt-SHA256 at 12 rounds, scrypt at 2^14), imports it
into Latchkey on a fresh data directory with `latchkey import django`, and
times, one request at a time, each user's first sign-in (the Django hash is
verified, then replaced by Argon2id) and second sign-in (Latchkey's own
Argon2id). Also times Django's own `check_password` on the same hashes, in
this process. Prints the median of each.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from mail_latency import free_port, post

HERE = os.path.dirname(os.path.abspath(__file__))
FORMATS = ["pbkdf2_sha256", "argon2", "bcrypt_sha256", "scrypt"]


def ms(samples):
    return f"{statistics.median(samples) * 1000:.1f} ms"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/latchkey")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="latchkey-imported-hashes-")
    django_db = os.path.join(work, "django.sqlite3")
    users = [
        {
            "username": f"{f}-{i}",
            "email": f"{f}-{i}@example.com",
            "password": f"{f} password {i}",
            "hasher": f,
        }
        for f in FORMATS
        for i in range(args.count)
    ]
    # Registered through djoser, in the peer's venv (bench/compare.sh or
    # interop/setup.sh makes it).
    made = subprocess.run(
        [os.path.join(HERE, "peer/.venv/bin/python"),
         os.path.join(HERE, "../interop/python/django_users.py"),
         "--database", f"sqlite://{django_db}"],
        input=json.dumps(users), capture_output=True, text=True, check=True,
    )
    stored = {u["email"]: u["password"] for u in json.loads(made.stdout)}
    env = dict(
        os.environ,
        LATCHKEY_DATA_DIR=os.path.join(work, "latchkey"),
        LATCHKEY_IP_RATE_LIMIT="0",
        LATCHKEY_MAIL_NOTICES="none",
        RUST_LOG="warn",
    )
    subprocess.run([args.binary, "import", "django", django_db], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen(
        [args.binary, "serve", "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/readyz")
                break
            except OSError:
                time.sleep(0.1)
        sys.path.insert(0, os.path.join(HERE, "../interop/python"))
        import django
        from django.conf import settings
        from django_users import HASHERS

        settings.configure(PASSWORD_HASHERS=HASHERS)
        django.setup()
        from django.contrib.auth.hashers import check_password

        print(f"{args.count} users per format, one request at a time")
        for f in FORMATS:
            first, second, django = [], [], []
            for u in (u for u in users if u["hasher"] == f):
                body = {"email": u["email"], "password": u["password"]}
                for samples in (first, second):
                    started = time.monotonic()
                    assert post(base, "/v1/login", body) == 200
                    samples.append(time.monotonic() - started)
                started = time.monotonic()
                assert check_password(u["password"], stored[u["email"]])
                django.append(time.monotonic() - started)
            print(
                f"{f}: first sign-in {ms(first)}, then {ms(second)} (Argon2id); "
                f"Django's check_password {ms(django)}"
            )
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
