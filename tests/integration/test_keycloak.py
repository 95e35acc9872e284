"""Identity through the real Keycloak of ``scripts/services``: bearer JWTs on the API, the
browser sign-in through Keycloak's own login form, sign-out, and ``apiary login`` by the device
authorization grant."""

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from tests.integration.keycloak import ISSUER, Browser, access_token, approve_device, configure

pytestmark = [pytest.mark.integration, pytest.mark.keycloak]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def keycloak(settings):
    return configure(settings)


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _segment(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict, dict, str]:
    head, body, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
        sig,
    )


# --- the API: bearer JWTs -------------------------------------------------------------------------


@pytest.mark.django_db
def test_keycloak_jwt_is_accepted_and_creates_the_user(keycloak):
    response = bearer(access_token("alice")).get("/api/v1/workflows/")
    assert response.status_code == 200, response.content
    alice = get_user_model().objects.get(username="alice")
    assert (alice.email, alice.first_name, alice.is_staff, alice.is_superuser) == (
        "alice@example.org",
        "Alice",
        False,
        False,
    )
    assert not alice.has_usable_password()

    assert bearer(access_token("admin")).get("/api/v1/workflows/").status_code == 200
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser


@pytest.mark.django_db
def test_keycloak_jwt_updates_an_existing_user_and_drops_staff_without_the_admin_role(keycloak):
    User = get_user_model()
    User.objects.create(username="bob", is_staff=True, is_superuser=True, email="old@example.org")
    assert bearer(access_token("bob")).get("/api/v1/workflows/").status_code == 200
    bob = User.objects.get(username="bob")
    assert (bob.is_staff, bob.is_superuser, bob.email) == (False, False, "bob@example.org")


@pytest.mark.django_db
def test_expired_jwt_is_401_with_a_clear_message(keycloak, monkeypatch):
    token = access_token("alice")
    exp = _parts(token)[1]["exp"]
    monkeypatch.setattr(keycloak, "_now", lambda: exp + 3600)  # the clock, not the token, moves
    response = bearer(token).get("/api/v1/workflows/")
    assert response.status_code == 401
    assert "expired" in response.json()["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_wrong_audience_is_401(keycloak, settings):
    settings.APIARY_OIDC_AUDIENCE = "some-other-service"
    response = bearer(access_token("alice")).get("/api/v1/workflows/")
    assert response.status_code == 401
    assert "audience" in response.json()["message"] and "some-other-service" in response.json()["message"]


@pytest.mark.django_db
def test_wrong_issuer_is_401(keycloak):
    token = access_token("alice")
    provider = keycloak.provider()
    provider.metadata  # noqa: B018 - discovery and keys from the real realm
    provider.issuer = ISSUER.replace("/realms/apiary", "/realms/elsewhere")
    response = bearer(token).get("/api/v1/workflows/")
    assert response.status_code == 401
    assert "issuer" in response.json()["message"]


@pytest.mark.django_db
def test_tampered_jwt_is_401(keycloak):
    token = access_token("alice")
    head, body, sig = token.split(".")
    claims = _parts(token)[1]
    claims["preferred_username"] = "admin"
    claims["roles"] = ["user", "admin"]
    response = bearer(f"{head}.{_segment(claims)}.{sig}").get("/api/v1/workflows/")
    assert response.status_code == 401
    assert "signature" in response.json()["message"]
    assert not get_user_model().objects.filter(username="admin").exists()


@pytest.mark.django_db
def test_unknown_kid_fetches_the_jwks_once_more(keycloak):
    token = access_token("alice")
    provider = keycloak.provider()
    assert bearer(token).get("/api/v1/workflows/").status_code == 200
    assert provider.jwks_fetches == 1
    assert bearer(token).get("/api/v1/workflows/").status_code == 200
    assert provider.jwks_fetches == 1  # cached

    # The realm's keys "rotated" since our cache was filled: the token's kid is unknown to it.
    provider._keys = {}
    provider._keys_fetched_at -= 60
    assert bearer(token).get("/api/v1/workflows/").status_code == 200
    assert provider.jwks_fetches == 2

    # A kid the realm does not have: one more fetch, then 401; again at once: no new fetch.
    head, body, sig = token.split(".")
    header = _parts(token)[0] | {"kid": "no-such-key"}
    forged = f"{_segment(header)}.{body}.{sig}"
    provider._keys_fetched_at -= 60
    response = bearer(forged).get("/api/v1/workflows/")
    assert response.status_code == 401 and "unknown key" in response.json()["message"]
    assert provider.jwks_fetches == 3
    assert bearer(forged).get("/api/v1/workflows/").status_code == 401
    assert provider.jwks_fetches == 3


@pytest.mark.django_db
def test_personal_api_tokens_still_work_with_keycloak_on(keycloak, api):
    assert api.get("/api/v1/workflows/").status_code == 200
    assert bearer("apy_not-a-token").get("/api/v1/workflows/").status_code == 401


@pytest.mark.django_db
def test_a_jwt_is_refused_when_keycloak_is_off(keycloak, settings):
    token = access_token("alice")
    settings.APIARY_OIDC_ISSUER = ""
    response = bearer(token).get("/api/v1/workflows/")
    assert response.status_code == 401
    assert "Keycloak is not configured" in response.json()["message"]


# --- the browser: authorization code flow through Keycloak's login form ---------------------------

HOST = "127.0.0.1:8000"  # Django's test client answers as this host; Keycloak redirects back to it


def browser_sign_in(username: str, next_url: str = "") -> tuple[Client, Browser, str]:
    """Sign in through Keycloak's real login form; returns the Django client, the "browser"
    holding Keycloak's cookies, and where Apiary sent the user afterwards."""
    django = Client(HTTP_HOST=HOST)
    page = django.get("/login/")
    assert b"Sign in with Keycloak" in page.content
    start = django.get("/oidc/login" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302 and start["Location"].startswith(ISSUER)
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] and query["nonce"]
    browser = Browser()
    callback = f"http://{HOST}/oidc/callback"
    form = browser.get(start["Location"])
    back = browser.login(form, username, stop_at=callback)
    assert back.status_code == 302, back.text[-1500:]
    location = back.headers["location"]
    assert location.startswith(callback), location
    done = django.get(location.removeprefix(f"http://{HOST}"))
    assert done.status_code == 302, done.content[:500]
    return django, browser, done["Location"]


@pytest.mark.django_db
def test_browser_sign_in_through_keycloak_creates_a_plain_user(keycloak):
    django, _, landed = browser_sign_in("alice", next_url="/archives/")
    assert landed == "/archives/"
    alice = get_user_model().objects.get(username="alice")
    assert not alice.is_staff and not alice.is_superuser and alice.last_name == "Liddell"
    assert django.get("/").status_code == 200
    assert django.get("/admin/").status_code == 302  # not staff: sent to the admin's login


@pytest.mark.django_db
def test_browser_sign_in_as_keycloak_admin_makes_staff(keycloak):
    django, _, landed = browser_sign_in("admin")
    assert landed == "/"
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert django.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_sign_out_ends_the_keycloak_session_too(keycloak):
    django, browser, _ = browser_sign_in("bob")
    out = django.post("/logout/")
    assert out.status_code == 302
    end = out["Location"]
    assert end.startswith(f"{ISSUER}/protocol/openid-connect/logout?")
    assert "id_token_hint" in parse_qs(urlsplit(end).query)
    back = browser.get(end, stop_at=f"http://{HOST}/")
    assert back.status_code == 302 and back.headers["location"] == f"http://{HOST}/login/"
    assert django.get("/").status_code == 302  # signed out of Apiary
    # Keycloak forgot the session: a new sign-in shows its login form again.
    again = Client(HTTP_HOST=HOST).get("/oidc/login")
    assert 'id="kc-form-login"' in browser.get(again["Location"]).text


@pytest.mark.django_db
def test_callback_with_an_unknown_state_is_refused(keycloak):
    response = Client(HTTP_HOST=HOST).get("/oidc/callback?state=forged&code=x")
    assert response.status_code == 400


@pytest.mark.django_db
def test_login_page_has_no_keycloak_button_when_it_is_off(settings):
    settings.APIARY_OIDC_ISSUER = ""
    assert b"Sign in with Keycloak" not in Client().get("/login/").content
    assert Client().get("/oidc/login").status_code == 404


# --- the CLI: device authorization grant ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_apiary_login_by_device_grant_stores_and_refreshes_the_token(keycloak, live_server, tmp_path):
    config = tmp_path / "cli" / "config.json"
    env = dict(os.environ, APIARY_CONFIG=str(config), PYTHONPATH=str(REPO))
    env.pop("APIARY_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "login", "--server", live_server.url],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        prompt = ""
        deadline = time.monotonic() + 60
        while "confirm the code" not in prompt and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            prompt += line
        match = re.search(r"open (http\S+)", prompt)
        assert match, f"no verification address printed: {prompt!r}"
        assert re.search(r"code [A-Z]{4}-[A-Z]{4}", prompt), prompt
        approve_device(match.group(1), "bob")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"{out}\n{prompt}{err}"
    assert "logged in to" in out
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    stored = json.loads(config.read_text())
    assert stored["server"] == live_server.url and stored["refresh_token"] and stored["oidc"]["client_id"]
    assert _parts(stored["token"])[1]["preferred_username"] == "bob"

    def cli_list() -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "portal.cli", "list", "--json"]
        return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)

    listed = cli_list()
    assert listed.returncode == 0, listed.stderr

    # An expired access token is refreshed from the stored refresh token before the request.
    old = stored["token"]
    stored["token_expires_at"] = int(time.time()) - 1
    config.write_text(json.dumps(stored))
    time.sleep(1.1)  # a new token differs at least by its iat
    listed = cli_list()
    assert listed.returncode == 0, listed.stderr
    refreshed = json.loads(config.read_text())
    assert refreshed["token"] != old and refreshed["token_expires_at"] > time.time()
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert get_user_model().objects.filter(username="bob", is_staff=False).exists()
