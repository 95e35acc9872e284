"""API authentication: ``Authorization: Bearer <personal API token>``.

Keycloak-issued JWTs join this module with the identity issue; session cookies (the portal)
are accepted by DRF's ``SessionAuthentication``.
"""

from django.utils import timezone
from rest_framework import authentication, exceptions

from portal.models import ApiToken, hash_token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0] != self.keyword:
            return None
        raw = parts[1]
        if not raw.startswith(ApiToken.PREFIX):
            return None
        token = (
            ApiToken.objects.select_related("user").filter(digest=hash_token(raw), revoked_at=None).first()
        )
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Unknown or revoked API token.")
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword
