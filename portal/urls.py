from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from portal import health, oidc, views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("login/", oidc.LoginView.as_view(), name="login"),
    path("logout/", oidc.logout_view, name="logout"),
    path("oidc/login", oidc.oidc_login, name="oidc-login"),
    path("oidc/callback", oidc.oidc_callback, name="oidc-callback"),
    path("oidc/cli-config", oidc.cli_config, name="oidc-cli-config"),
    path("api/v1/", include("workflows.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include("workflows.page_urls")),
    path("tokens/", views.tokens, name="tokens"),
]
