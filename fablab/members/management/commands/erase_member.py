"""``manage.py erase_member <username>``: an administrator erases a member (their right to erasure).

The member is replaced by a tombstone everywhere (:func:`fablab.members.privacy.erase_member`); their
bookings, sessions, certifications and attendances stay counted in the reports without their name.
It asks for confirmation unless ``--yes``.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from fablab.members.privacy import erase_member


class Command(BaseCommand):
    help = "Erase a member: replace them with a tombstone everywhere (cannot be undone)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args, username: str, yes: bool, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No member has the username {username!r}.")
        if not yes:
            answer = input(f"Erase {username} for good? This cannot be undone. Type the username again: ")
            if answer.strip() != username:
                raise CommandError("Not confirmed; nothing was changed.")
        if not erase_member(user):
            self.stdout.write(f"{username} was already erased; nothing changed.")
            return
        self.stdout.write(
            self.style.SUCCESS(f"Erased; the account is now the tombstone {user.get_username()}.")
        )
