"""Helpers for tests against the real Keycloak of ``scripts/services`` (realm ``apiary``).

Tokens come from Keycloak itself: the password grant of the public client ``apiary-cli``
(enabled for tests) and the browser login form, driven with httpx.
"""

import html
import os
import re
from http.cookies import SimpleCookie
from urllib.parse import urljoin

import httpx
import pytest

ISSUER = os.environ.get("APIARY_OIDC_ISSUER") or "http://127.0.0.1:58080/realms/apiary"
TOKEN_URL = f"{ISSUER}/protocol/openid-connect/token"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "admin": "admin-password"}


def configure(settings):
    """Point Apiary at the real Keycloak (failing, not skipping, when it is not up); the module
    :mod:`portal.oidc` with an empty provider cache. Call it from a ``keycloak`` fixture."""
    try:
        httpx.get(f"{ISSUER}/.well-known/openid-configuration", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"Keycloak is not up at {ISSUER} ({exc}); run scripts/services up")
    settings.APIARY_OIDC_ISSUER = ISSUER
    settings.APIARY_OIDC_CLIENT_ID = os.environ.get("APIARY_OIDC_CLIENT_ID") or "apiary-portal"
    settings.APIARY_OIDC_CLIENT_SECRET = (
        os.environ.get("APIARY_OIDC_CLIENT_SECRET") or "apiary-portal-dev-secret"
    )
    settings.APIARY_OIDC_AUDIENCE = os.environ.get("APIARY_OIDC_AUDIENCE") or "apiary"
    settings.APIARY_OIDC_CLI_CLIENT_ID = "apiary-cli"
    from portal import oidc

    oidc._providers.clear()
    return oidc


def password_grant(username: str, password: str | None = None) -> dict:
    """Tokens for a test user by the password grant of ``apiary-cli``."""
    response = httpx.post(
        TOKEN_URL,
        data={
            "grant_type": "password",
            "client_id": "apiary-cli",
            "username": username,
            "password": password or PASSWORDS[username],
            "scope": "openid",
        },
        timeout=15,
    )
    assert response.status_code == 200, response.text
    return response.json()


def access_token(username: str) -> str:
    return password_grant(username)["access_token"]


class Browser:
    """A minimal browser for Keycloak's pages: follows redirects, keeps cookies.

    Keycloak marks its cookies ``Secure``; browsers send them to http://127.0.0.1 (a
    potentially trustworthy origin), Python's cookie jar does not, so they are kept here by hand.
    ``stop_at`` ends redirect-following at a URL prefix (e.g. Apiary's callback) and returns it.
    """

    def __init__(self):
        self.jar: dict[str, str] = {}
        self.http = httpx.Client(follow_redirects=False, timeout=20)

    def request(self, method: str, url: str, *, stop_at: str | None = None, **kwargs) -> httpx.Response:
        for _ in range(15):
            cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
            response = self.http.request(method, url, headers={"Cookie": cookie} if cookie else {}, **kwargs)
            for header in response.headers.get_list("set-cookie"):
                jar = SimpleCookie()
                jar.load(header)
                for name, morsel in jar.items():
                    if morsel["max-age"] == "0" or "1970" in (morsel["expires"] or ""):
                        self.jar.pop(name, None)
                    else:
                        self.jar[name] = morsel.value
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            url = urljoin(str(response.url), response.headers["location"])
            if stop_at and url.startswith(stop_at):
                return response
            method, kwargs = "GET", {}
        raise AssertionError(f"too many redirects, last {url}")

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def submit(self, page: httpx.Response, data: dict, **kwargs) -> httpx.Response:
        """Post the (first or ``kc-form-login``) form of ``page`` with ``data``."""
        match = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text) or re.search(
            r'<form[^>]*action="([^"]+)"', page.text
        )
        assert match, f"no form in Keycloak's page {page.url}:\n{page.text[-2000:]}"
        action = urljoin(str(page.url), html.unescape(match.group(1)))
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        return self.request("POST", action, data={**hidden, **data}, **kwargs)

    def login(self, page: httpx.Response, username: str, **kwargs) -> httpx.Response:
        assert 'id="kc-form-login"' in page.text, f"not Keycloak's login form: {page.url}"
        return self.submit(page, {"username": username, "password": PASSWORDS[username]}, **kwargs)


def approve_device(url: str, username: str) -> None:
    """Approve a device code as ``username``: Keycloak's verification page, login, consent."""
    browser = Browser()
    page = browser.login(browser.get(url), username)
    if "login-actions/consent" in page.text:
        page = browser.submit(page, {"accept": "Yes"})
    assert page.status_code == 200, page.text[-2000:]
    assert "Device Login Successful" in page.text or "successful" in page.text.lower(), page.text[-2000:]
