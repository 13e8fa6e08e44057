"""The population stability index, shared by `mlops monitor drift` (checks.py) and the service (the
live drift gauges, serve/monitor.py): plain Python, no pandas or SciPy, so the service can
import it."""

from __future__ import annotations

import math
from collections.abc import Sequence

PSI_FLOOR = 1e-4  # an empty bin counts as this share, so PSI stays finite


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index between two share vectors over the same bins."""
    total = 0.0
    for reference, current in zip(expected, actual, strict=True):
        reference, current = max(reference, PSI_FLOOR), max(current, PSI_FLOOR)
        total += (current - reference) * math.log(current / reference)
    return float(total)
