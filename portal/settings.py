"""Apiary settings, read from the environment.

Every knob is an environment variable with an embedded default (DESIGN.md principle 7): with
nothing set, Apiary runs on SQLite, the local batch system, the SQL graph store and a filesystem
Celery broker under ``var/``, so ``scripts/demo`` works on a laptop. A bad value stops start-up
with a message naming the variable (see :mod:`portal.env`).
"""

from pathlib import Path

from portal.env import env_bool, env_choice, env_int, env_list, env_str, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("APIARY_VAR_DIR", str(BASE_DIR / "var"))).resolve()

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-development-key-change-me-for-production-use")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_htmx",
    "portal",
    "resources",
    "workflows",
    "sessions.apps.IoseaSessionsConfig",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": parse_database_url("DATABASE_URL", f"sqlite:///{VAR_DIR / 'apiary.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.authentication.ApiTokenAuthentication",
        "portal.authentication.KeycloakJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Apiary API",
    "DESCRIPTION": "CWL workflows on HPC batch systems.",
    "VERSION": "1.0.0",
}

# --- Celery -------------------------------------------------------------------------------
# The embedded default broker is kombu's filesystem transport under var/, so a first look
# needs no Redis. Production sets CELERY_BROKER_URL=redis://…
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": 3600}
)
if CELERY_BROKER_URL.startswith("filesystem"):
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
# One queue per Apiary instance, so that two instances (or two test sessions) sharing a Redis
# never take each other's tasks.
CELERY_TASK_DEFAULT_QUEUE = env_str("APIARY_CELERY_QUEUE", "apiary")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("APIARY_TASK_TIME_LIMIT", 600)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "reconcile-batch-jobs": {
        "task": "workers.reconcile",
        "schedule": float(env_int("APIARY_RECONCILE_SECONDS", 10)),
    },
}

# --- Apiary -------------------------------------------------------------------------------
APIARY_BATCH_SYSTEM = env_choice("APIARY_BATCH_SYSTEM", ["local", "slurm"], "local")
APIARY_GRAPH_STORE = env_choice("APIARY_GRAPH_STORE", ["sql", "neo4j"], "sql")
# The Neo4j projection (APIARY_GRAPH_STORE=neo4j); scripts/services env prints NEO4J_URL/USER/PASSWORD.
APIARY_NEO4J_URL = env_str("APIARY_NEO4J_URL", env_str("NEO4J_URL", "bolt://127.0.0.1:57687"))
APIARY_NEO4J_USER = env_str("APIARY_NEO4J_USER", env_str("NEO4J_USER", "neo4j"))
APIARY_NEO4J_PASSWORD = env_str("APIARY_NEO4J_PASSWORD", env_str("NEO4J_PASSWORD", ""))
# Where each workflow's documents, job scripts, logs and outputs live. On a cluster this must
# be on a filesystem that the compute nodes share with the login node.
APIARY_RUNS_DIR = Path(env_str("APIARY_RUNS_DIR", str(VAR_DIR / "runs"))).resolve()
# The URL the job wrapper on a compute node posts its completion notice to. Empty: no push,
# the periodic reconcile alone notices finished jobs.
APIARY_CALLBACK_URL = env_str("APIARY_CALLBACK_URL", "http://127.0.0.1:8000")
# Extra #SBATCH lines for every job (site policy), separated by ';', e.g. "--account=proj1".
APIARY_SBATCH_OPTIONS = env_list("APIARY_SBATCH_OPTIONS", [], separator=";")
APIARY_RETRY_LIMIT = env_int("APIARY_RETRY_LIMIT", 2)
# How steps with a DockerRequirement run: "charliecloud" (ch-run, the default) or "none" (ignore
# DockerRequirement and run on the host, like cwltool --no-container).
APIARY_CONTAINER_RUNTIME = env_choice("APIARY_CONTAINER_RUNTIME", ["charliecloud", "none"], "charliecloud")
# The site image store: where dockerPull names are looked up (debian:stable-slim ->
# debian+stable-slim.tar.gz, .tar, or a directory); on a cluster, shared with the compute nodes.
APIARY_IMAGE_STORE = Path(env_str("APIARY_IMAGE_STORE", str(VAR_DIR / "images"))).resolve()
APIARY_MAX_UPLOAD_BYTES = env_int("APIARY_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = APIARY_MAX_UPLOAD_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Archives (README: "Archives, copy and re-execute"). A workflow that ends is packaged into
# <APIARY_ARCHIVE_DIR>/<workflow id>.tgz by the worker, unless APIARY_ARCHIVE_ENABLED is off.
APIARY_ARCHIVE_ENABLED = env_bool("APIARY_ARCHIVE_ENABLED", True)
APIARY_ARCHIVE_DIR = Path(env_str("APIARY_ARCHIVE_DIR", str(VAR_DIR / "archives"))).resolve()
# Output files go into the archive while their total stays within this (smallest first); the
# others are recorded by reference (location, size, sha256).
APIARY_ARCHIVE_MAX_OUTPUT_BYTES = env_int("APIARY_ARCHIVE_MAX_OUTPUT_BYTES", 100 * 1024 * 1024)
# Each step's job.out / job.err enters an archive cut to this size (first and last halves).
APIARY_ARCHIVE_MAX_LOG_BYTES = env_int("APIARY_ARCHIVE_MAX_LOG_BYTES", 16 * 1024 * 1024)
# Limits on an uploaded (untrusted) archive: members, bytes (compressed and unpacked), and the
# unpacked/compressed ratio (checked once more than 1 MiB is unpacked; gzip bombs reach ~1000).
APIARY_ARCHIVE_MAX_MEMBERS = env_int("APIARY_ARCHIVE_MAX_MEMBERS", 10_000)
APIARY_ARCHIVE_MAX_BYTES = env_int("APIARY_ARCHIVE_MAX_BYTES", 1024**3)
APIARY_ARCHIVE_MAX_RATIO = env_int("APIARY_ARCHIVE_MAX_RATIO", 200)

# --- Identity (Keycloak) -----------------------------------------------------------------
# All empty: Keycloak is off and only local accounts sign in. With an issuer, the portal offers
# "Sign in with Keycloak" (authorization code + PKCE, confidential client) and the API accepts
# Keycloak bearer JWTs whose `aud` holds APIARY_OIDC_AUDIENCE (README: "Identity (Keycloak)").
APIARY_OIDC_ISSUER = env_str("APIARY_OIDC_ISSUER", "").rstrip("/")
APIARY_OIDC_CLIENT_ID = env_str("APIARY_OIDC_CLIENT_ID", "")
APIARY_OIDC_CLIENT_SECRET = env_str("APIARY_OIDC_CLIENT_SECRET", "")
APIARY_OIDC_AUDIENCE = env_str("APIARY_OIDC_AUDIENCE", "")
# The public client `apiary login` uses for the device authorization grant.
APIARY_OIDC_CLI_CLIENT_ID = env_str("APIARY_OIDC_CLI_CLIENT_ID", "apiary-cli")
_oidc = {
    "APIARY_OIDC_ISSUER": APIARY_OIDC_ISSUER,
    "APIARY_OIDC_CLIENT_ID": APIARY_OIDC_CLIENT_ID,
    "APIARY_OIDC_CLIENT_SECRET": APIARY_OIDC_CLIENT_SECRET,
    "APIARY_OIDC_AUDIENCE": APIARY_OIDC_AUDIENCE,
}
if any(_oidc.values()) and not all(_oidc.values()):
    from django.core.exceptions import ImproperlyConfigured

    _missing = ", ".join(name for name, value in _oidc.items() if not value)
    raise ImproperlyConfigured(f"Keycloak is half configured: set {_missing} too (or none of APIARY_OIDC_*).")
if APIARY_OIDC_ISSUER and not APIARY_OIDC_ISSUER.startswith(("http://", "https://")):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"APIARY_OIDC_ISSUER={APIARY_OIDC_ISSUER!r} is not an http(s) URL.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("APIARY_LOG_LEVEL", "INFO")},
    "loggers": {
        "cwltool": {"level": "WARNING"},
        "salad": {"level": "WARNING"},
    },
}
