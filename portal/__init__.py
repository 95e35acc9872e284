"""The Django project: settings, URLs, the Celery app, authentication, the dashboard."""

from .celery import app as celery_app

__all__ = ["celery_app"]
