"""What a search records: each trial's values and fold scores, and the search as a whole
(its ranking, its best trial, and the trial it proposes: the best, only when it beats the
current values by more than the noise of the folds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_template.contract.metrics import LOWER_IS_BETTER


@dataclass(frozen=True)
class Trial:
    number: int  # 0: the current model section; then in the order drawn
    values: dict[str, Any]  # model.<name>: value, for each searched hyperparameter
    scores: tuple[float, ...]  # one per fold
    seconds: float  # fitting and scoring, summed over the folds

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))


@dataclass(frozen=True)
class Search:
    metric: str
    trials: tuple[Trial, ...]
    planned: int  # trials planned (the current section included)
    seconds: float
    stopped: str  # why it stopped before every planned trial ran; "" when none

    def ranked(self) -> list[Trial]:
        """Best first; a tie goes to the earlier trial (the current section first)."""
        sign = 1.0 if self.metric in LOWER_IS_BETTER else -1.0
        return sorted(self.trials, key=lambda trial: (sign * trial.mean, trial.number))

    @property
    def best(self) -> Trial:
        return self.ranked()[0]

    def gain(self, trial: Trial) -> tuple[float, float]:
        """How much better `trial` scores than the current values (trial 0) on the same folds:
        the mean of the paired fold differences (positive: better) and its standard error."""
        sign = -1.0 if self.metric in LOWER_IS_BETTER else 1.0
        differences = sign * (np.array(trial.scores) - np.array(self.trials[0].scores))
        error = np.std(differences, ddof=1) / math.sqrt(len(differences))
        return float(np.mean(differences)), float(error)

    @property
    def proposed(self) -> Trial:
        """The best trial when it beats the current values by more than the standard error of
        the paired fold differences; otherwise trial 0: within that noise, nothing changes."""
        mean, error = self.gain(self.best)
        return self.best if mean > error else self.trials[0]
