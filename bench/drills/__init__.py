"""Failure drills through nginx (python -m bench.drills.run); not part of make test."""
