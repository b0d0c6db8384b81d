"""djoser's user endpoints and its simplejwt views, under /auth/ as djoser documents."""

from django.urls import include, path

urlpatterns = [
    path("auth/", include("djoser.urls")),
    path("auth/", include("djoser.urls.jwt")),
]
