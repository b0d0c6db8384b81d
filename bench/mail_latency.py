"""Time from an API request to its mail arriving at a real SMTP server.

    interop/python/.venv/bin/python bench/mail_latency.py [--binary target/release/latchkey] [--count 50]

Starts an SMTP server (aiosmtpd, from the interop venv: interop/setup.sh)
and Latchkey on a fresh data directory with smtp_url pointing at it, then,
one request at a time: registrations (each mails a verification link) and
password reset requests (each mails a reset link). For every message it
records the time from sending the request to the message being received,
and prints the median, 95th percentile and maximum of each.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from aiosmtpd.controller import Controller

arrivals = {}
arrived = threading.Condition()


class Sink:
    async def handle_DATA(self, server, session, envelope):
        with arrived:
            for to in envelope.rcpt_tos:
                arrivals.setdefault(to, []).append(time.monotonic())
            arrived.notify_all()
        return "250 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base, path, body):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        return response.status


def wait_for_mail(address, count, timeout=30):
    deadline = time.monotonic() + timeout
    with arrived:
        while len(arrivals.get(address, [])) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit(f"no mail {count} to {address} within {timeout} s")
            arrived.wait(left)
        return arrivals[address][count - 1]


def summary(name, samples):
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(
        f"{name}: n={len(ms)} median {statistics.median(ms):.1f} ms, "
        f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/latchkey")
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()

    smtp_port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    data_dir = tempfile.mkdtemp(prefix="latchkey-mail-latency-")
    port = free_port()
    env = dict(
        os.environ,
        LATCHKEY_DATA_DIR=data_dir,
        LATCHKEY_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}?tls=none",
        LATCHKEY_IP_RATE_LIMIT="0",
        LATCHKEY_MAIL_NOTICES="none",
        LATCHKEY_LOG_FORMAT="json",
        RUST_LOG="warn",
    )
    server = subprocess.Popen(
        [args.binary, "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/readyz")
                break
            except OSError:
                time.sleep(0.1)
        register, reset = [], []
        for i in range(args.count):
            email = f"latency-{i}@example.com"
            started = time.monotonic()
            post(base, "/v1/register", {"email": email, "password": "violet kettle harbour"})
            register.append(wait_for_mail(email, 1) - started)
        for i in range(args.count):
            email = f"latency-{i}@example.com"
            started = time.monotonic()
            post(base, "/v1/password-reset", {"email": email})
            reset.append(wait_for_mail(email, 2) - started)
        summary("registration -> verification mail received", register)
        summary("reset request -> reset mail received", reset)
    finally:
        server.terminate()
        server.wait()
        controller.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
