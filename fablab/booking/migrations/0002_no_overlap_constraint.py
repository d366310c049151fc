"""The database's own guarantee against double booking (PostgreSQL only).

No two active bookings of one machine may overlap in [start, blocked_until).
SQLite has no exclusion constraints; there the services serialize writers
with IMMEDIATE transactions instead (see fablab.booking.services).
"""

from django.db import migrations


from fablab.booking.migrations._no_overlap_sql import CREATE, DROP


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("booking", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
