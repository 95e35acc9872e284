"""Keycloak (OpenID Connect) identity: token validation, the browser sign-in and sign-out.

* :func:`validate_access_token` checks a Keycloak bearer JWT (RS256 signature against the
  realm's JWKS — cached, fetched again once when a token names an unknown ``kid`` — issuer,
  audience, expiry) and is used by the API (:class:`portal.authentication.KeycloakJWTAuthentication`)
  and by the browser callback.
* The browser flow is the authorization code flow with PKCE (S256), ``state`` and ``nonce``,
  written with httpx: ``/oidc/login`` → Keycloak's login page → ``/oidc/callback``, which
  exchanges the code (confidential client), checks the ID token and the access token, creates or
  updates the Django user (:func:`user_from_claims`) and signs it in. Sign-out ends the Keycloak
  session too (RP-initiated logout with ``id_token_hint``).
* ``/oidc/cli-config`` tells ``apiary login`` where to run the device authorization grant.

Users are matched by Keycloak's ``preferred_username`` (the Django user name). The realm role
``admin`` makes a Django staff user and superuser; ``user`` a plain one; a token with neither is
refused. Settings: ``APIARY_OIDC_ISSUER``, ``APIARY_OIDC_CLIENT_ID``, ``APIARY_OIDC_CLIENT_SECRET``,
``APIARY_OIDC_AUDIENCE`` (all empty: Keycloak off).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import time
from urllib.parse import urlencode

import httpx
import jwt
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

log = logging.getLogger(__name__)

ROLE_USER, ROLE_ADMIN = "user", "admin"
SESSION_FLOWS = "oidc_flows"  # state -> {verifier, nonce, next}: sign-ins under way
SESSION_ID_TOKEN = "oidc_id_token"  # kept for RP-initiated logout
FLOW_SECONDS = 600  # a sign-in must come back from Keycloak within this


class TokenError(Exception):
    """A token that must be refused; the message says why, in plain words."""


def enabled() -> bool:
    return bool(settings.APIARY_OIDC_ISSUER)


def _now() -> float:
    """The clock for expiry checks (tests move it forward)."""
    return time.time()


class Provider:
    """The realm's discovery document and signing keys, fetched lazily and cached per issuer."""

    LEEWAY = 10  # seconds of clock skew allowed on exp/iat
    JWKS_MIN_REFRESH_SECONDS = 5.0  # an unknown kid fetches the JWKS again at most this often

    def __init__(self, issuer: str):
        self.issuer = issuer
        self._metadata: dict | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_fetched_at = 0.0
        self.jwks_fetches = 0
        self._lock = threading.Lock()

    def _get(self, url: str) -> dict:
        try:
            response = httpx.get(url, timeout=10)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenError(f"the identity provider could not be reached ({url}: {exc})") from None

    @property
    def metadata(self) -> dict:
        if self._metadata is None:
            data = self._get(f"{self.issuer}/.well-known/openid-configuration")
            if data.get("issuer") != self.issuer:
                raise TokenError(
                    f"the identity provider names itself {data.get('issuer')!r}, not {self.issuer!r}"
                )
            self._metadata = data
        return self._metadata

    def endpoint(self, name: str) -> str:
        return self.metadata[name]

    def _fetch_keys(self) -> None:
        data = self._get(self.endpoint("jwks_uri"))
        keys = {}
        for entry in data.get("keys", []):
            if entry.get("use", "sig") != "sig" or not entry.get("kid"):
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or algorithm we do not use
        self._keys = keys
        self._keys_fetched_at = time.monotonic()
        self.jwks_fetches += 1

    def key(self, kid: str) -> jwt.PyJWK:
        """The signing key ``kid``; an unknown kid fetches the JWKS again (once, rate-limited)."""
        with self._lock:
            if not self._keys_fetched_at:
                self._fetch_keys()
            if kid not in self._keys and (
                time.monotonic() - self._keys_fetched_at >= self.JWKS_MIN_REFRESH_SECONDS
            ):
                self._fetch_keys()
            try:
                return self._keys[kid]
            except KeyError:
                raise TokenError(f"the token is signed with an unknown key (kid {kid!r})") from None

    def decode(self, token: str, *, audience: str, nonce: str | None = None) -> dict:
        """Check signature (RS256), issuer, audience, expiry (and nonce); return the claims."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("the token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise TokenError(f"the token's algorithm {header.get('alg')!r} is not accepted (RS256 only)")
        key = self.key(str(header.get("kid") or ""))
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_iss": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"the token is malformed ({exc})") from None
        if claims.get("iss") != self.issuer:
            raise TokenError(f"the token's issuer {claims.get('iss')!r} is not {self.issuer!r}")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud or [])
        if audience not in auds:
            raise TokenError(f"the token's audience {auds} does not include {audience!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise TokenError("the token has no expiry (exp)")
        if exp + self.LEEWAY < _now():
            raise TokenError(
                f"the token expired at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(exp))}"
            )
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenError("the ID token's nonce does not match this sign-in")
        if not claims.get("sub"):
            raise TokenError("the token names no subject (sub)")
        return claims


_providers: dict[str, Provider] = {}
_providers_lock = threading.Lock()


def provider() -> Provider:
    issuer = settings.APIARY_OIDC_ISSUER
    with _providers_lock:
        if issuer not in _providers:
            _providers[issuer] = Provider(issuer)
        return _providers[issuer]


def validate_access_token(token: str) -> dict:
    """The claims of a valid Keycloak access token for Apiary; raises :class:`TokenError`."""
    claims = provider().decode(token, audience=settings.APIARY_OIDC_AUDIENCE)
    if claims.get("typ", "Bearer") != "Bearer":
        raise TokenError(f"the token is a {claims.get('typ')!r} token, not an access token")
    return claims


def roles_of(claims: dict) -> set[str]:
    roles = set(claims.get("roles") or [])
    roles.update((claims.get("realm_access") or {}).get("roles") or [])
    return roles


def user_from_claims(claims: dict):
    """Create or update the Django user a Keycloak token names; the admin role makes staff."""
    username = claims.get("preferred_username")
    if not username:
        raise TokenError("the token carries no preferred_username")
    roles = roles_of(claims)
    if not roles & {ROLE_USER, ROLE_ADMIN}:
        raise TokenError(f"{username} has neither the '{ROLE_USER}' nor the '{ROLE_ADMIN}' role in Keycloak")
    is_admin = ROLE_ADMIN in roles
    wanted = {
        "email": claims.get("email") or "",
        "first_name": (claims.get("given_name") or "")[:150],
        "last_name": (claims.get("family_name") or "")[:150],
        "is_staff": is_admin,
        "is_superuser": is_admin,
    }
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username[:150], defaults=wanted)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        return user
    changed = [field for field, value in wanted.items() if getattr(user, field) != value]
    if changed:
        for field in changed:
            setattr(user, field, wanted[field])
        user.save(update_fields=changed)
    return user


# --- browser: authorization code flow with PKCE --------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _callback_url(request) -> str:
    return request.build_absolute_uri(reverse("oidc-callback"))


class LoginView(auth_views.LoginView):
    """Django's sign-in page, offering "Sign in with Keycloak" when Keycloak is configured."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["oidc_enabled"] = enabled()
        return context


@require_GET
def oidc_login(request):
    if not enabled():
        raise Http404("Keycloak sign-in is not configured.")
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    now = time.time()
    flows = {
        k: v for k, v in (request.session.get(SESSION_FLOWS) or {}).items() if now - v["at"] < FLOW_SECONDS
    }
    while len(flows) >= 5:  # a few tabs at most; the oldest sign-in attempt goes
        flows.pop(next(iter(flows)))
    flows[state] = {"verifier": verifier, "nonce": nonce, "next": next_url, "at": time.time()}
    request.session[SESSION_FLOWS] = flows
    try:
        authorize = provider().endpoint("authorization_endpoint")
    except TokenError as exc:
        messages.error(request, f"Keycloak sign-in is unavailable: {exc}")
        return redirect("login")
    params = {
        "response_type": "code",
        "client_id": settings.APIARY_OIDC_CLIENT_ID,
        "redirect_uri": _callback_url(request),
        "scope": "openid profile email",
        "state": state,
        "nonce": nonce,
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    return redirect(f"{authorize}?{urlencode(params)}")


def _refuse(request, message: str):
    log.warning("Keycloak sign-in refused: %s", message)
    messages.error(request, f"Keycloak sign-in failed: {message}")
    return redirect("login")


@require_GET
def oidc_callback(request):
    if not enabled():
        raise Http404("Keycloak sign-in is not configured.")
    flows = dict(request.session.get(SESSION_FLOWS) or {})
    flow = flows.pop(request.GET.get("state", ""), None)
    request.session[SESSION_FLOWS] = flows
    if flow is not None and time.time() - flow["at"] >= FLOW_SECONDS:
        flow = None
    if flow is None:
        return HttpResponseBadRequest(
            "Unknown or already used sign-in state; start again from the sign-in page."
        )
    if "error" in request.GET:
        return _refuse(request, request.GET.get("error_description") or request.GET["error"])
    code = request.GET.get("code")
    if not code:
        return _refuse(request, "Keycloak returned no authorization code")
    try:
        response = httpx.post(
            provider().endpoint("token_endpoint"),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": _callback_url(request),
                "code_verifier": flow["verifier"],
            },
            auth=(settings.APIARY_OIDC_CLIENT_ID, settings.APIARY_OIDC_CLIENT_SECRET),
            timeout=15,
        )
    except (httpx.HTTPError, TokenError) as exc:
        return _refuse(request, f"the token endpoint could not be reached ({exc})")
    if response.status_code != 200:
        return _refuse(request, f"the code exchange answered {response.status_code}: {response.text[:200]}")
    tokens = response.json()
    try:
        id_claims = provider().decode(
            tokens.get("id_token", ""), audience=settings.APIARY_OIDC_CLIENT_ID, nonce=flow["nonce"]
        )
        access_claims = validate_access_token(tokens.get("access_token", ""))
        if access_claims["sub"] != id_claims["sub"]:
            raise TokenError("the ID token and the access token name different users")
        user = user_from_claims({**access_claims, **id_claims, "roles": sorted(roles_of(access_claims))})
    except TokenError as exc:
        return _refuse(request, str(exc))
    if not user.is_active:
        return _refuse(request, f"the account {user.username} is disabled in Apiary")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[SESSION_ID_TOKEN] = tokens["id_token"]
    return redirect(flow["next"] or resolve_url(settings.LOGIN_REDIRECT_URL))


@require_POST
def logout_view(request):
    """Sign out of Apiary; a Keycloak sign-in also ends the Keycloak session (RP-initiated logout)."""
    id_token = request.session.get(SESSION_ID_TOKEN)
    logout(request)
    back = request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL))
    if id_token and enabled():
        try:
            end_session = provider().endpoint("end_session_endpoint")
        except (TokenError, KeyError):
            return redirect(back)
        params = {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": back,
            "client_id": settings.APIARY_OIDC_CLIENT_ID,
        }
        return redirect(f"{end_session}?{urlencode(params)}")
    return redirect(back)


@require_GET
def cli_config(request):
    """Where ``apiary login`` runs the device authorization grant (404 without Keycloak)."""
    if not enabled():
        raise Http404("Keycloak is not configured on this server.")
    try:
        metadata = provider().metadata
    except TokenError as exc:
        return JsonResponse({"message": str(exc), "extra": {}}, status=503)
    return JsonResponse(
        {
            "issuer": settings.APIARY_OIDC_ISSUER,
            "client_id": settings.APIARY_OIDC_CLI_CLIENT_ID,
            "device_authorization_endpoint": metadata.get("device_authorization_endpoint"),
            "token_endpoint": metadata.get("token_endpoint"),
        }
    )
