#!/usr/bin/env python3
"""Grows a `latchkey export` snapshot by N users, each with one live session.

Reads a snapshot (the JSON that `latchkey export` writes) and writes a new one
holding everything the input held plus N generated users and N sessions, one
per user, ready for `latchkey import` into an empty database configured with
the same master key. Used by bench/scaling.sh to measure the server with a
large user table; standard library only.

Every generated user gets the password hash of a real user of the input (the
first one with an Argon2 hash, or --hash-from EMAIL), so they all log in with
that user's password. What a generated row holds, and why:

- user ids are UUIDv7 carrying the user's creation time, as the server makes
  them; session ids are UUIDv4, as the server makes them;
- emails are `seed<n>@<domain>`, ASCII and lowercase, so `email_normalized`
  (the server's NFKC + lowercase) is the address itself;
- users were created over the last --user-age days, in id order; a third of
  them have a display name;
- each session has a fresh random salt of the length the server uses (that of
  a session in the input, else 16 bytes), started within the last 20 days and
  last used within the last 5 (at most --session-ttl and --idle-ttl ago, so
  `expires_at` and `idle_expires_at` are days in the future); a used session
  has a generation above 0 and `rotated_at` set; user agent and IP (from the
  documentation ranges) are drawn from small pools.

The output is written as a stream, row by row in chunks, so its size is not
held in memory: a million users and sessions take 10-20 s and about 750 MB of
disk. Created with mode 0600, like an export: it holds password hashes.

usage: bench/seed.py INPUT OUTPUT --users N [options]   (- for stdin/stdout)
"""

import argparse
import base64
import json
import os
import random
import sys
import tempfile
import time

DAY = 86_400
CHUNK = 10_000

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances",
               "Ken", "Margaret", "Dennis", "Radia", "Tony", "Sophie", "Niklaus")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth",
              "Allen", "Thompson", "Hamilton", "Ritchie", "Perlman", "Hoare",
              "Wilson", "Wirth")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "okhttp/4.12.0",
    "MyApp/3.2.1 (Android 15; Pixel 8)",
)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Add N users, each with one live session, to a latchkey export.",
        epilog="The output holds password hashes: keep it secret.",
    )
    p.add_argument("input", help="snapshot written by `latchkey export` (- for stdin)")
    p.add_argument("output", help="snapshot to write (- for stdout); replaced if it exists")
    p.add_argument("--users", "-n", type=int, required=True, help="users (and sessions) to add")
    p.add_argument("--hash-from", metavar="EMAIL",
                   help="copy this user's password hash (default: the first user with one)")
    p.add_argument("--domain", default="scale.example.com",
                   help="domain of the generated emails [scale.example.com]")
    p.add_argument("--user-age", type=float, default=365, metavar="DAYS",
                   help="users were created over this many days up to now [365]")
    p.add_argument("--session-ttl", type=float, default=30, metavar="DAYS",
                   help="the server's session_ttl, for expires_at [30]")
    p.add_argument("--idle-ttl", type=float, default=7, metavar="DAYS",
                   help="the server's refresh_idle_ttl, for idle_expires_at [7]")
    p.add_argument("--salt-bytes", type=int,
                   help="session salt length (default: that of a session in the input, else 16)")
    p.add_argument("--seed", type=int,
                   help="seed for times, names and pools (ids and salts are always random)")
    p.add_argument("--now", type=int, help="Unix time to count from (default: now)")
    args = p.parse_args(argv)
    if args.users < 0:
        p.error("--users must be at least 0")
    if args.session_ttl <= 2 or args.idle_ttl <= 1:
        p.error("--session-ttl must be over 2 days and --idle-ttl over 1 day")
    return args


def load(path):
    if path == "-":
        return json.load(sys.stdin)
    with open(path, "rb") as f:
        return json.load(f)


def pick_hash(users, email):
    for u in users:
        if email is not None and u["email_normalized"] != email.strip().lower():
            continue
        h = u.get("password_hash") or ""
        if h.startswith("$argon2"):
            return u["email"], h
        if email is not None:
            sys.exit(f"seed.py: {email} has no Argon2 password hash")
    if email is not None:
        sys.exit(f"seed.py: no user {email} in the input")
    sys.exit("seed.py: the input has no user with a password hash; "
             "create one first (latchkey users add --email … --password-stdin)")


def uuid_text(v):
    h = "%032x" % v
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Version and variant bits of RFC 9562 UUIDs.
VERSION_MASK = ~(0xF << 76) & ((1 << 128) - 1)
VARIANT_MASK = ~(0x3 << 62) & ((1 << 128) - 1)
VARIANT = 0x2 << 62


def uuid4(rand16):
    v = int.from_bytes(rand16, "big")
    return uuid_text((v & VERSION_MASK & VARIANT_MASK) | (4 << 76) | VARIANT)


def uuid7(ms, rand10):
    r = int.from_bytes(rand10, "big")  # 80 random bits; 74 are used
    v = (ms << 80) | (7 << 76) | ((r >> 62 & 0xFFF) << 64) | VARIANT | (r & ((1 << 62) - 1))
    return uuid_text(v)


class Writer:
    """Comma-separated JSON rows of one array, written in chunks."""

    def __init__(self, out):
        self.out, self.first, self.buf = out, True, []

    def row(self, text):
        if self.first:
            self.first = False
            self.buf.append(text)
        else:
            self.buf.append("," + text)
        if len(self.buf) >= CHUNK:
            self.flush()

    def flush(self):
        self.out.write("".join(self.buf))
        self.buf = []


def generated(args, n, now, password_hash, rng):
    """Yields (user JSON, session JSON) for the n new users."""
    q = json.dumps  # only for the values that are not plain ASCII by construction
    hash_json = q(password_hash)
    domain = args.domain.strip().lower()
    span = int(args.user_age * DAY)
    session_ttl, idle_ttl = int(args.session_ttl * DAY), int(args.idle_ttl * DAY)
    # Started within the last 20 days (or the session lifetime less two days),
    # last used within the last 5 (or the idle lifetime less one day).
    started_window = min(20 * DAY, session_ttl - 2 * DAY)
    used_window = min(5 * DAY, idle_ttl - DAY)
    agents = [q(a) for a in USER_AGENTS]
    salt_bytes = args.salt_bytes
    b64 = base64.b64encode
    randbelow = rng.randrange
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        pool = os.urandom(count * (10 + 16 + salt_bytes))
        at = 0
        for i in range(start, start + count):
            # --- the user
            created = now - span + (span * i) // max(n, 1)
            ms = created * 1000 + randbelow(1000)
            user_id = uuid7(ms, pool[at:at + 10])
            at += 10
            email = f"seed{i + 1}@{domain}"
            name = (f'"{FIRST_NAMES[i % 14]} {LAST_NAMES[(i // 14) % 14]}"'
                    if i % 3 == 0 else "null")
            user = (
                f'{{"id":"{user_id}","email":"{email}","email_normalized":"{email}",'
                f'"name":{name},"password_hash":{hash_json},"email_verified":{"true" if i % 2 else "false"},'
                f'"disabled":false,"not_before":0,"created_at":{created}}}'
            )
            # --- its session
            session_id = uuid4(pool[at:at + 16])
            at += 16
            salt = b64(pool[at:at + salt_bytes]).decode()
            at += salt_bytes
            s_created = now - randbelow(min(started_window, now - created) + 1)
            last_used = max(s_created, now - randbelow(used_window + 1))
            expires = s_created + session_ttl
            idle_expires = min(last_used + idle_ttl, expires)
            if last_used > s_created:
                generation = 1 + (last_used - s_created) // 3600 % 50
                rotated = str(last_used)
            else:
                generation, rotated = 0, "null"
            ip = (f"203.0.113.{i % 254 + 1}" if i % 2 else f"198.51.100.{i % 253 + 1}")
            session = (
                f'{{"id":"{session_id}","user_id":"{user_id}","salt":"{salt}",'
                f'"generation":{generation},"rotated_at":{rotated},"created_at":{s_created},'
                f'"last_used_at":{last_used},"idle_expires_at":{idle_expires},'
                f'"expires_at":{expires},"revoked_at":null,'
                f'"user_agent":{agents[i % len(agents)]},"ip":"{ip}"}}'
            )
            yield user, session


def write(args, snap, out, side_path):
    now = args.now if args.now is not None else int(time.time())
    users, sessions = snap.get("users", []), snap.get("sessions", [])
    source, password_hash = pick_hash(users, args.hash_from)
    if args.salt_bytes is None:
        args.salt_bytes = (len(base64.b64decode(sessions[0]["salt"])) if sessions else 16)
    domain = args.domain.strip().lower()
    taken = {u["email_normalized"] for u in users}
    clash = [e for e in taken if e.startswith("seed") and e.endswith("@" + domain)]
    if clash:
        sys.exit(f"seed.py: the input already has generated users ({clash[0]}); "
                 "seed the base export, or use another --domain")
    rng = random.Random(args.seed)

    # A session is made with its user but belongs after all the users in the
    # file, so the session rows wait in a side file and are copied in after.
    if side_path is None:
        side = tempfile.TemporaryFile("w+", encoding="ascii")
    else:
        side = open(side_path, "w+", encoding="ascii")
    try:
        out.write('{"version":%s,"users":[' % json.dumps(snap.get("version", 1)))
        uw, sw = Writer(out), Writer(side)
        for u in users:
            uw.row(json.dumps(u, separators=(",", ":")))
        for s in sessions:
            sw.row(json.dumps(s, separators=(",", ":")))
        for user, session in generated(args, args.users, now, password_hash, rng):
            uw.row(user)
            sw.row(session)
        uw.flush()
        sw.flush()
        out.write('],"sessions":[')
        side.seek(0)
        while True:
            block = side.read(1 << 22)
            if not block:
                break
            out.write(block)
        out.write("]")
        for key, value in snap.items():
            if key not in ("version", "users", "sessions"):
                out.write(",%s:%s" % (json.dumps(key), json.dumps(value, separators=(",", ":"))))
        out.write("}")
    finally:
        side.close()
        if side_path:
            os.unlink(side_path)
    return source, len(users) + args.users, len(sessions) + args.users


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    snap = load(args.input)
    if not isinstance(snap, dict) or "users" not in snap or "signing_keys" not in snap:
        sys.exit("seed.py: the input is not a latchkey export")
    if args.output == "-":
        result = write(args, snap, sys.stdout, None)
    else:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="ascii", buffering=1 << 20) as out:
            result = write(args, snap, out, args.output + ".sessions.tmp")
    source, n_users, n_sessions = result
    print(f"seed.py: {n_users} users, {n_sessions} sessions "
          f"(+{args.users} with the password of {source}) "
          f"in {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
