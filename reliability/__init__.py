"""Reliability tooling: the loopback load test (python -m reliability.loadtest)."""
