"""``manage.py create_token USER [--password P] [--staff] [--name N]``: ensure a local account
exists and print a new personal API token for it (used by scripts/demo and by site staff)."""

from django.core.management.base import BaseCommand

from portal.services import api_token_create, user_ensure


class Command(BaseCommand):
    help = "Create the local user if missing and print a new personal API token for it."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", help="set this password (local sign-in)")
        parser.add_argument("--staff", action="store_true", help="make the user a site admin")
        parser.add_argument("--name", default="cli", help="a label for the token")

    def handle(self, *args, username, password, staff, name, **options):
        user = user_ensure(username=username, password=password, is_staff=staff)
        _, secret = api_token_create(user=user, name=name)
        self.stdout.write(secret)
