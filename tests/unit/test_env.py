import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_choice, env_int, parse_database_url

pytestmark = pytest.mark.unit


def test_bad_choice_names_the_variable(monkeypatch):
    monkeypatch.setenv("APIARY_BATCH_SYSTEM", "pbs")
    with pytest.raises(ImproperlyConfigured, match="APIARY_BATCH_SYSTEM='pbs'.*local, slurm"):
        env_choice("APIARY_BATCH_SYSTEM", ["local", "slurm"], "local")


def test_defaults_apply_when_unset(monkeypatch):
    monkeypatch.delenv("APIARY_X", raising=False)
    assert env_choice("APIARY_X", ["a", "b"], "a") == "a"
    assert env_int("APIARY_X", 5) == 5
    assert env_bool("APIARY_X", True) is True


def test_bad_integer_and_boolean(monkeypatch):
    monkeypatch.setenv("APIARY_X", "ten")
    with pytest.raises(ImproperlyConfigured, match="APIARY_X='ten' is not an integer"):
        env_int("APIARY_X", 1)
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        env_bool("APIARY_X", False)


def test_database_url_must_be_postgres_or_sqlite(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@h/db")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        parse_database_url("DATABASE_URL", "sqlite:///x")
    monkeypatch.setenv("DATABASE_URL", "postgres://a:b@127.0.0.1:5/apiary")
    assert parse_database_url("DATABASE_URL", "")["NAME"] == "apiary"


def test_settings_refuse_bad_value_at_startup(monkeypatch):
    import subprocess
    import sys

    env = {"APIARY_BATCH_SYSTEM": "pbs", "DJANGO_SETTINGS_MODULE": "portal.settings", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    assert proc.returncode != 0
    assert "APIARY_BATCH_SYSTEM='pbs' is not supported" in proc.stderr
