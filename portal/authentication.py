"""API authentication: ``Authorization: Bearer <personal API token>`` or ``<Keycloak JWT>``.

Session cookies (the portal) are accepted by DRF's ``SessionAuthentication``.
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


class KeycloakJWTAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <Keycloak access token>`` (a JWT), when Keycloak is configured.

    The signature (RS256, the realm's JWKS), issuer, audience (``APIARY_OIDC_AUDIENCE``) and
    expiry are checked by :func:`portal.oidc.validate_access_token`; the user is created or
    updated from the claims as on a browser sign-in. Personal API tokens (``apy_…``) are left to
    :class:`ApiTokenAuthentication`.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        from portal import oidc

        header = authentication.get_authorization_header(request).decode(errors="replace")
        parts = header.split()
        if len(parts) != 2 or parts[0] != self.keyword or parts[1].startswith(ApiToken.PREFIX):
            return None
        if not oidc.enabled():
            raise exceptions.AuthenticationFailed(
                "Bearer token rejected: not an Apiary API token, and Keycloak is not configured here."
            )
        try:
            claims = oidc.validate_access_token(parts[1])
            user = oidc.user_from_claims(claims)
        except oidc.TokenError as exc:
            raise exceptions.AuthenticationFailed(f"Bearer token rejected: {exc}.") from None
        if not user.is_active:
            raise exceptions.AuthenticationFailed(
                f"Bearer token rejected: the account {user.username} is disabled."
            )
        return user, claims

    def authenticate_header(self, request):
        return f'{self.keyword} realm="apiary"'
