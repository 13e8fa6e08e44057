"""Monitoring production traffic: the prediction log's records (records.py), reading the log
and the feedback (logs.py), the population stability index (psi.py), the drift checks and
their verdict (checks.py), the reports (render.py), `mlops monitor drift` (drift.py) and `mlops
monitor fetch` (fetch.py).

The service imports records.py and psi.py only (the import contracts in pyproject.toml
enforce it): both use the standard library alone, so the serving image can run them.
Nothing here imports the service. This file imports nothing, so that importing one module
does not load the others.
"""
