"""Write paths of the portal app: API tokens."""

from django.contrib.auth import get_user_model
from django.utils import timezone

from portal.errors import NotFound
from portal.models import ApiToken, hash_token


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """Create a personal API token; returns the row and the secret, which is never stored."""
    secret = ApiToken.new_secret()
    token = ApiToken.objects.create(user=user, name=name[:100] or "token", digest=hash_token(secret))
    return token, secret


def api_token_revoke(*, user, token_id: int) -> None:
    updated = ApiToken.objects.filter(pk=token_id, user=user, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    if not updated:
        raise NotFound(f"No active API token {token_id} of yours.")


def user_ensure(*, username: str, password: str | None = None, is_staff: bool = False):
    """Create a local account if missing (used by the demo and tests); returns the user."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": is_staff})
    if created or password:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.is_staff = is_staff
        user.is_superuser = is_staff
        user.save()
    return user
