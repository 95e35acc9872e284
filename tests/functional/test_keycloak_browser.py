"""Signing in and out through the real Keycloak in a real browser (Chromium via Playwright)."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.integration.keycloak import configure

pytestmark = [
    pytest.mark.functional,
    pytest.mark.integration,
    pytest.mark.keycloak,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def keycloak(settings):
    return configure(settings)


def test_sign_in_with_keycloak_and_sign_out_of_both(keycloak, page, screenshots):
    page.goto("/login/")
    page.get_by_role("link", name="Sign in with Keycloak").click()
    expect(page.locator("#kc-form-login")).to_be_visible()
    screenshots(page, "keycloak-login-form")
    page.fill("#username", "admin")
    page.fill("#password", "admin-password")
    page.click("#kc-login")
    page.wait_for_url("**/")
    expect(page.locator(".who")).to_have_text("admin")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser and admin.email == "admin@example.org"
    screenshots(page, "keycloak-signed-in")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login/")
    # The Keycloak session ended too: signing in again asks for the password again.
    page.get_by_role("link", name="Sign in with Keycloak").click()
    expect(page.locator("#kc-form-login")).to_be_visible()
    page.fill("#username", "alice")
    page.fill("#password", "alice-password")
    page.click("#kc-login")
    page.wait_for_url("**/")
    expect(page.locator(".who")).to_have_text("alice")
    assert not get_user_model().objects.get(username="alice").is_staff
