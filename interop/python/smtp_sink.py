"""A real SMTP server for the mail tests (aiosmtpd).

    smtp_sink.py PORT [--tls starttls|implicit] [--auth USER:PASSWORD]

Listens on 127.0.0.1:PORT (0 picks a free port), prints `listening on PORT`
(and, with --tls, ` cert PATH`: the PEM of the test CA that signed the
certificate it made for localhost and 127.0.0.1), then one JSON line per message received:
{"from": ..., "to": [...], "data": "<the message as sent>", "tls": bool,
"user": ...}. With --auth, mail is accepted only after AUTH with those
credentials. Runs until its standard input closes or it is killed.
"""

import argparse
import datetime
import ipaddress
import json
import os
import socket
import ssl
import sys
import tempfile
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, implicit_tls):
        self.implicit_tls = implicit_tls

    async def handle_DATA(self, server, session, envelope):
        line = json.dumps(
            {
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
                "tls": self.implicit_tls or session.ssl is not None,
                "user": session.auth_data.login.decode() if session.authenticated else None,
            }
        )
        print(line, flush=True)
        return "250 OK"


def self_signed():
    """A CA, and a certificate it signed for localhost and 127.0.0.1, as PEM
    files: returns (CA certificate, server certificate, server key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, ca, extra=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for extension in extra:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("smtp-sink test CA", "smtp-sink test CA", ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    leaf = build("localhost", "smtp-sink test CA", key.public_key(), ca_key, False, (names, usage))

    folder = tempfile.mkdtemp(prefix="smtp-sink-")
    paths = [os.path.join(folder, name) for name in ("ca.pem", "cert.pem", "key.pem")]
    contents = [
        ca.public_bytes(serialization.Encoding.PEM),
        leaf.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ]
    for path, content in zip(paths, contents):
        with open(path, "wb") as f:
            f.write(content)
    return paths


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--tls", choices=["starttls", "implicit"])
    parser.add_argument("--auth")
    args = parser.parse_args()

    port = args.port
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]

    options = {}
    shown = f"listening on {port}"
    if args.tls:
        ca, cert, key = self_signed()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if args.tls == "starttls":
            options.update(tls_context=context, require_starttls=True)
        else:
            options.update(ssl_context=context)
        shown += f" cert {ca}"
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            # handled=False: aiosmtpd answers a failure with 535 itself.
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        options.update(
            authenticator=authenticator,
            auth_required=True,
            # Over implicit TLS aiosmtpd does not count the connection as
            # TLS for AUTH (it looks for STARTTLS); it is TLS all the same.
            auth_require_tls=args.tls == "starttls",
        )

    controller = Controller(Sink(args.tls == "implicit"), hostname="127.0.0.1", port=port, **options)
    controller.start()
    print(shown, flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
