import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.unit


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit:
        pytest.fail(f"models and migrations differ; run manage.py makemigrations:\n{out.getvalue()}")
