"""Portal pages owned by the project app: personal API tokens."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from portal.errors import ApplicationError
from portal.services import api_token_create, api_token_revoke


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    secret = None
    if request.method == "POST":
        try:
            if "revoke" in request.POST:
                api_token_revoke(user=request.user, token_id=int(request.POST["revoke"]))
                messages.success(request, "Token revoked.")
                return redirect("tokens")
            _, secret = api_token_create(
                user=request.user, name=request.POST.get("name", "").strip() or "cli"
            )
        except (ApplicationError, ValueError) as exc:
            messages.error(request, str(exc))
    tokens = request.user.api_tokens.filter(revoked_at=None)
    return render(request, "portal/tokens.html", {"tokens": tokens, "secret": secret, "title": "API tokens"})
