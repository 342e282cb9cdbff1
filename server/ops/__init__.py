"""Health, readiness, metrics and published keys."""
