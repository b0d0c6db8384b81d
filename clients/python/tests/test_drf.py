"""Django REST framework with latchkey_verify.drf.LatchkeyAuthentication."""

import django
from django.conf import settings

from conftest import AUDIENCE, CLIENT_ID, CLIENT_SECRET, ISSUER, POLL_INTERVAL

settings.configure(
    SECRET_KEY="tests only",
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": ["latchkey_verify.drf.LatchkeyAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        "UNAUTHENTICATED_USER": None,
    },
    LATCHKEY={
        "ISSUER": ISSUER,
        "AUDIENCE": AUDIENCE,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "POLL_INTERVAL": POLL_INTERVAL,
    },
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import override_settings  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.test import APIRequestFactory  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from conftest import forged, post, refused_within, unsigned  # noqa: E402


class Orders(APIView):
    def get(self, request):
        return Response({"user": str(request.user.pk), "sid": request.auth["sid"]})


VIEW = Orders.as_view()


def call(token=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return VIEW(APIRequestFactory().get("/orders", **headers))


def test_a_valid_token_reaches_the_view_as_its_user(session):
    response = call(session["access_token"])
    assert response.status_code == 200, response.data
    assert response.data["user"] == session["sub"]


def test_forged_and_unsigned_tokens_and_none_are_refused(session):
    for token in (forged(session["access_token"]), unsigned(session["access_token"]), "x.y.z"):
        assert call(token).status_code == 401
    missing = call()
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_logged_out_sessions_token_is_refused_within_the_poll_interval(session):
    token = session["access_token"]
    assert call(token).status_code == 200
    assert post("/v1/logout", token=token)[0] == 204
    took = refused_within(lambda: call(token).status_code, POLL_INTERVAL + 5)
    print(f"refused by the DRF view {took:.2f} s after the logout (poll {POLL_INTERVAL} s)")


def test_the_user_can_be_the_django_user_the_token_names(session):
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username=session["sub"])
    conf = dict(settings.LATCHKEY, USER_FIELD="username")
    with override_settings(LATCHKEY=conf):
        response = call(session["access_token"])
        assert response.status_code == 200
        assert response.data["user"] == str(user.pk)
        user.is_active = False
        user.save()
        assert call(session["access_token"]).status_code == 401
