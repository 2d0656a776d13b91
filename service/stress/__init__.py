"""Stress jobs: probe a model's robustness on the user's own audio with the 54 simulated scenarios.

``plan`` validates a request, ``corrupt`` makes deterministic clips, ``runner`` transcribes and
scores them, ``summary`` ranks scenarios, ``report`` renders HTML, ``store`` persists atomically
and ``jobs`` owns the background tasks and their limits. The HTTP routes are in
``service/api/stress.py``.
"""
