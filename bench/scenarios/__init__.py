"""Measurement protocols: each takes settings and a backend and returns metrics."""
