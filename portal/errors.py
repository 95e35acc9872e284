"""The one error type of Apiary's services and how the API renders it.

Services raise :class:`ApplicationError` (or a subclass carrying the HTTP status); DRF views,
HTMX views, the CLI and Celery tasks never invent their own. The API renders every error as
``{"message": ..., "extra": {...}}`` with a 4xx status, never a 500 for bad input.
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(ApplicationError):
    """The object exists but its state forbids the action (e.g. pausing a finished workflow)."""

    status_code = status.HTTP_409_CONFLICT


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        message = "The request is not valid; see extra.fields for what to fix."
        response.data = {"message": message, "extra": {"fields": response.data}}
    elif isinstance(exc, exceptions.APIException):
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        response.data = {"message": str(detail or exc.detail), "extra": {}}
    return response
