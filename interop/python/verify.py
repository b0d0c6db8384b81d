"""Verifies Latchkey access tokens with PyJWT, as a Python resource server would.

Used by the Rust interop tests (crates/latchkey/tests/api/interop.rs) to prove
that a verifier nobody on the project wrote accepts genuine tokens and refuses
forged ones. The `verify` function is the snippet shown in docs/verifying.md;
keep the two identical.

Reads one JSON job from standard input:
    {"jwks_uri", "issuer", "audience", "algorithms": [...],
     "cases": [{"name", "token", "expect"}]}
and prints one JSON line: [{"name", "accepted": bool, "error": str | null}].
A token PyJWT refuses is a result, not a failure; anything else (a bug here, an
unreachable JWKS) ends the script with a traceback and a non-zero status.
"""

import json
import sys

import jwt
from jwt import PyJWKClient

REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "sid", "client_id"]
# Header members that would let the token choose its own key or change how it
# is processed (RFC 8725 §3.10); PyJWT ignores them, Latchkey never sets them.
REFUSED_HEADERS = {"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"}
ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt"}  # RFC 9068 §4
LEEWAY_SECONDS = 5


def verify(token, jwks_client, issuer, audience, algorithms):
    """Returns the claims of a valid access token; raises jwt.PyJWTError otherwise."""
    header = jwt.get_unverified_header(token)
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise jwt.InvalidTokenError("typ is not at+jwt")
    refused = REFUSED_HEADERS.intersection(header)
    if refused:
        raise jwt.InvalidTokenError(f"header member not accepted: {sorted(refused)}")
    signing_key = jwks_client.get_signing_key_from_jwt(token)
    # Only the algorithm the JWK names may verify with that key.
    if header.get("alg") != signing_key.algorithm_name:
        raise jwt.InvalidAlgorithmError("alg does not match the key's alg")
    return jwt.decode(
        token,
        signing_key,
        algorithms=algorithms,
        audience=audience,
        issuer=issuer,
        leeway=LEEWAY_SECONDS,
        options={"require": REQUIRED_CLAIMS},
    )


def main():
    job = json.load(sys.stdin)
    jwks_client = PyJWKClient(job["jwks_uri"], timeout=10)
    results = []
    for case in job["cases"]:
        try:
            verify(
                case["token"],
                jwks_client,
                job["issuer"],
                job["audience"],
                job["algorithms"],
            )
            results.append({"name": case["name"], "accepted": True, "error": None})
        except jwt.PyJWKClientConnectionError:
            raise
        except jwt.PyJWTError as error:
            message = f"{type(error).__name__}: {error}"
            results.append({"name": case["name"], "accepted": False, "error": message})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
