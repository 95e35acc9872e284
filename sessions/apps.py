from django.apps import AppConfig


class IoseaSessionsConfig(AppConfig):
    """Django's own ``django.contrib.sessions`` owns the label ``sessions``, so ours is ``iosea``."""

    name = "sessions"
    label = "iosea"
    verbose_name = "IO-SEA sessions"
    default_auto_field = "django.db.models.BigAutoField"
