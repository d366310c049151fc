"""The database's own guarantee against double booking (PostgreSQL only).

No two active bookings of one machine may overlap in [start, blocked_until).
SQLite has no exclusion constraints; there the services serialize writers
with IMMEDIATE transactions instead (see fablab.booking.services).
"""

from django.db import migrations

ACTIVE = "('pending', 'confirmed', 'checked_in', 'completed')"

CREATE = f"""
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE booking_booking ADD CONSTRAINT booking_no_overlap EXCLUDE USING gist (
    machine_id WITH =,
    tstzrange(start, blocked_until, '[)') WITH &&
) WHERE (status IN {ACTIVE});
"""
DROP = "ALTER TABLE booking_booking DROP CONSTRAINT IF EXISTS booking_no_overlap;"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("booking", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
