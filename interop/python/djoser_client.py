"""A front end's calls to djoser + djangorestframework-simplejwt, written from
their documentation alone (djoser 2.3: "Base Endpoints" and "JWT Endpoints";
simplejwt 5.5: "Getting started", "Settings" with ROTATE_REFRESH_TOKENS and
BLACKLIST_AFTER_ROTATION, "Blacklist app"). The tests run it unchanged against
the real djoser peer (bench/peer) and against Latchkey with compat = ["djoser"].

    python djoser_client.py http://127.0.0.1:8000

Prints each step; exits 1 at the first answer that differs from the documents.
"""

import json
import sys
import urllib.error
import urllib.request
import uuid

BASE = sys.argv[1].rstrip("/")


def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json", "accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, (json.loads(raw) if raw else None)


def expect(step, answer, status, check=lambda body: True):
    got, body = answer
    if got != status or not check(body):
        print(f"FAIL {step}: expected {status}, got {got} {body}")
        sys.exit(1)
    print(f"ok   {step}: {got}")
    return body


email = f"client-{uuid.uuid4().hex[:10]}@example.com"
password, new_password = "violet kettle harbour 41", "amber lantern meadow 73"

# djoser: POST /users/ registers; the answer carries the login field and the id.
expect("register", call("POST", "/auth/users/", {"email": email, "password": password}), 201,
       lambda b: b["email"] == email)
expect("register again", call("POST", "/auth/users/", {"email": email, "password": password}),
       400, lambda b: "email" in b)
expect("register without a password", call("POST", "/auth/users/", {"email": "x" + email}), 400,
       lambda b: b["password"] == ["This field is required."])

# simplejwt: POST /jwt/create/ gives an access and a refresh token.
expect("create with a wrong password",
       call("POST", "/auth/jwt/create/", {"email": email, "password": "wrong " + password}), 401,
       lambda b: "detail" in b)
pair = expect("create", call("POST", "/auth/jwt/create/", {"email": email, "password": password}),
              200, lambda b: b["access"] and b["refresh"])

# djoser: GET /users/me/ with the access token.
expect("me", call("GET", "/auth/users/me/", token=pair["access"]), 200,
       lambda b: b["email"] == email and "id" in b)
expect("me without a token", call("GET", "/auth/users/me/"), 401, lambda b: "detail" in b)
expect("me with a bad token", call("GET", "/auth/users/me/", token="not-a-token"), 401,
       lambda b: b["code"] == "token_not_valid")

# simplejwt: /jwt/verify/ answers 200 {} for a valid token, 401 token_not_valid otherwise.
expect("verify", call("POST", "/auth/jwt/verify/", {"token": pair["access"]}), 200,
       lambda b: b == {})
expect("verify a bad token", call("POST", "/auth/jwt/verify/", {"token": "not-a-token"}), 401,
       lambda b: b["code"] == "token_not_valid")

# simplejwt with ROTATE_REFRESH_TOKENS: /jwt/refresh/ returns a new refresh too.
rotated = expect("refresh", call("POST", "/auth/jwt/refresh/", {"refresh": pair["refresh"]}), 200,
                 lambda b: b["access"] and b["refresh"] and b["refresh"] != pair["refresh"])
expect("me with the new access token", call("GET", "/auth/users/me/", token=rotated["access"]),
       200, lambda b: b["email"] == email)

# djoser: POST /users/set_password/ with the current password.
expect("set_password with a wrong current password",
       call("POST", "/auth/users/set_password/",
            {"current_password": "wrong " + password, "new_password": new_password},
            token=rotated["access"]), 400, lambda b: "current_password" in b)
expect("set_password",
       call("POST", "/auth/users/set_password/",
            {"current_password": password, "new_password": new_password},
            token=rotated["access"]), 204)
expect("create with the old password",
       call("POST", "/auth/jwt/create/", {"email": email, "password": password}), 401)
fresh = expect("create with the new password",
               call("POST", "/auth/jwt/create/", {"email": email, "password": new_password}), 200)

# simplejwt's blacklist app: a blacklisted refresh token (and one rotated away) is refused.
expect("blacklist", call("POST", "/auth/jwt/blacklist/", {"refresh": fresh["refresh"]}), 200)
expect("refresh a blacklisted token",
       call("POST", "/auth/jwt/refresh/", {"refresh": fresh["refresh"]}), 401,
       lambda b: b["code"] == "token_not_valid")
expect("refresh a rotated-away token",
       call("POST", "/auth/jwt/refresh/", {"refresh": pair["refresh"]}), 401,
       lambda b: b["code"] == "token_not_valid")

# djoser: DELETE /users/me/ with the current password.
last = expect("create once more",
              call("POST", "/auth/jwt/create/", {"email": email, "password": new_password}), 200)
expect("delete with a wrong password",
       call("DELETE", "/auth/users/me/", {"current_password": "wrong"}, token=last["access"]), 400,
       lambda b: "current_password" in b)
expect("delete", call("DELETE", "/auth/users/me/", {"current_password": new_password},
                      token=last["access"]), 204)
expect("create after the deletion",
       call("POST", "/auth/jwt/create/", {"email": email, "password": new_password}), 401)
print("all steps passed")
