"""A real SMTP server for the mail tests (aiosmtpd).

Listens on 127.0.0.1:PORT (argv[1]; 0 picks a free port), prints
`listening on PORT`, then one JSON line per message received:
{"from": ..., "to": [...], "data": "<the message as sent>"}.
Runs until its standard input closes or it is killed.
"""

import json
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    async def handle_DATA(self, server, session, envelope):
        line = json.dumps(
            {
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
            }
        )
        print(line, flush=True)
        return "250 OK"


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    controller = Controller(Sink(), hostname="127.0.0.1", port=port or 0)
    if port == 0:
        # aiosmtpd needs a port; find a free one the way the OS would.
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            controller.port = s.getsockname()[1]
    controller.start()
    print(f"listening on {controller.port}", flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
