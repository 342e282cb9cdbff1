"""Operator scripts: a local cluster behind a real balancer (``python -m scripts.cluster``)."""
