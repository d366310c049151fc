"""SQL of the no-overlap exclusion constraint, shared by migration 0002 and the race tests."""

ACTIVE = "('pending', 'confirmed', 'checked_in', 'completed')"

CREATE = f"""
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE booking_booking ADD CONSTRAINT booking_no_overlap EXCLUDE USING gist (
    machine_id WITH =,
    tstzrange(start, blocked_until, '[)') WITH &&
) WHERE (status IN {ACTIVE});
"""
DROP = "ALTER TABLE booking_booking DROP CONSTRAINT IF EXISTS booking_no_overlap;"
