"""The population stability index (monitoring/psi.py), which `mlops monitor drift` and the
service's live drift gauge both report: its value on known shares, and the edge cases a window
of live traffic produces (a class never predicted, a bin the reference never filled)."""

from __future__ import annotations

import math

import pytest

from mlops_template.monitoring.psi import PSI_FLOOR, psi


def test_identical_shares_have_no_drift() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_a_known_shift_has_the_textbook_value() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.2747, abs=1e-4)


def test_it_is_symmetric_and_grows_with_the_shift() -> None:
    reference = [0.5, 0.3, 0.2]
    small, large = [0.45, 0.33, 0.22], [0.2, 0.3, 0.5]
    assert psi(reference, large) == pytest.approx(psi(large, reference))
    assert 0 < psi(reference, small) < psi(reference, large)


def test_an_empty_bin_counts_as_the_floor_so_the_index_stays_finite() -> None:
    # The service's gauge: no request predicted the first class yet.
    value = psi([0.44, 0.2, 0.36], [0.0, 0.0, 1.0])
    assert math.isfinite(value)
    expected = sum(
        (max(c, PSI_FLOOR) - r) * math.log(max(c, PSI_FLOOR) / r)
        for r, c in zip([0.44, 0.2, 0.36], [0.0, 0.0, 1.0], strict=True)
    )
    assert value == pytest.approx(expected)
    # Empty on both sides: the bin adds nothing.
    assert psi([0.0, 0.5, 0.5], [0.0, 0.5, 0.5]) == 0.0
    # A category the reference never had, now seen: a large, finite index.
    assert 1.0 < psi([0.0, 1.0], [0.5, 0.5]) < 10.0


def test_share_vectors_over_different_bins_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"shorter|longer"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_no_bins_is_no_drift() -> None:
    assert psi([], []) == 0.0
