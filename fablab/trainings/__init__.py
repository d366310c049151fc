"""Training sessions members sign up for, the trainers who run them, and initiatives (see docs/trainings.md)."""
