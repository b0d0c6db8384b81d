"""djoser's user endpoints and its simplejwt views, under /auth/ as djoser documents,
and simplejwt's blacklist view (which djoser's URLs leave out) beside them."""

from django.urls import include, path
from rest_framework_simplejwt.views import TokenBlacklistView

urlpatterns = [
    path("auth/", include("djoser.urls")),
    path("auth/", include("djoser.urls.jwt")),
    path("auth/jwt/blacklist/", TokenBlacklistView.as_view(), name="jwt-blacklist"),
]
