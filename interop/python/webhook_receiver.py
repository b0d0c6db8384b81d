"""A webhook receiver for the tests, verifying as a receiver would with the
Standard Webhooks library (PyPI `standardwebhooks`).

    webhook_receiver.py [--status CODE] [--port PORT]

Listens on 127.0.0.1:PORT (default: a free port), prints `listening on PORT`, then reads
the endpoint's secret (`whsec_…`) as the first line of its standard input.
Each POST is verified with `Webhook(secret).verify(body, headers)` and
printed as one JSON line: {"ok": bool, "error": str|null, "id": ...,
"type": ..., "payload": {...}|null, "schema_error": str|null (the payload
checked against docs/webhooks/TYPE.schema.json), "headers": {...},
"body": "..."}.
Verified requests are answered CODE (default 204), others 400. Runs until
its standard input closes.
"""

import argparse
import json
import pathlib
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
from standardwebhooks.webhooks import Webhook

# The published schema of every event type (docs/webhooks/TYPE.schema.json).
SCHEMAS = {
    path.name.removesuffix(".schema.json"): json.loads(path.read_text())
    for path in (pathlib.Path(__file__).parents[2] / "docs" / "webhooks").glob("*.schema.json")
}

secret_ready = threading.Event()
state = {"secret": None}
# Requests are served by several threads at once: one line at a time.
printing = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    status = 204

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        secret_ready.wait(10)
        record = {"ok": False, "error": None, "schema_error": None, "payload": None, "headers": headers,
                  "body": body.decode("utf-8", "replace"), "id": headers.get("webhook-id")}
        try:
            payload = Webhook(state["secret"]).verify(body, headers)
            record["ok"] = True
            record["payload"] = payload
            record["type"] = payload.get("type")
            schema = SCHEMAS.get(record["type"])
            if schema is None:
                record["schema_error"] = f"no schema for {record['type']}"
            else:
                try:
                    jsonschema.validate(payload, schema)
                except jsonschema.ValidationError as error:
                    record["schema_error"] = error.message
        except Exception as error:  # the library's own refusal, reported as is
            record["error"] = f"{type(error).__name__}: {error}"
        with printing:
            print(json.dumps(record), flush=True)
        self.send_response(self.status if record["ok"] else 400)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--status", type=int, default=204)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    Receiver.status = args.status
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening on {server.server_address[1]}", flush=True)
    state["secret"] = sys.stdin.readline().strip()
    secret_ready.set()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
