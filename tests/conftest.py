"""Shared test set-up: hypothesis without wall-clock deadlines (shared, noisy machines)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fablab", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("fablab")
