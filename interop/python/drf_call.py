"""Calls a Django REST framework view, authenticated by the Python package
(clients/python, latchkey_verify.drf), with an access token; prints the
status and the user the view saw as JSON.

    PYTHONPATH=clients/python/src python drf_call.py ISSUER AUDIENCE TOKEN
"""

import json
import sys

import django
from django.conf import settings

issuer, audience, token = sys.argv[1:4]
settings.configure(
    SECRET_KEY="a view for the tests only",
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": ["latchkey_verify.drf.LatchkeyAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        "UNAUTHENTICATED_USER": None,
    },
    LATCHKEY={"ISSUER": issuer, "AUDIENCE": audience},
)
django.setup()

from rest_framework.response import Response  # noqa: E402
from rest_framework.test import APIRequestFactory  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


class Me(APIView):
    def get(self, request):
        return Response({"user": str(request.user.pk)})


response = Me.as_view()(APIRequestFactory().get("/me", HTTP_AUTHORIZATION=f"Bearer {token}"))
print(json.dumps({"status": response.status_code, "data": response.data}))
