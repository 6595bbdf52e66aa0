"""The HDR-style histogram against exact percentiles of known samples."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ds_triton_perf.histogram import Histogram


def test_percentiles_match_exact_values_within_bucket_error() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(20_000), 0.8) for _ in range(50_000)]  # µs, long tail
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    for percent in (50, 90, 95, 99, 99.9):
        exact = float(np.percentile(values, percent, method="inverted_cdf"))
        assert histogram.percentile(percent) == pytest.approx(exact, rel=0.01)
    assert histogram.max_us == round(max(values))
    assert histogram.mean_us == pytest.approx(float(np.mean(values)), rel=1e-3)


def test_small_values_are_exact_and_empty_histogram_is_nan() -> None:
    histogram = Histogram()
    assert math.isnan(histogram.percentile(50))
    for value in (1, 2, 3, 4, 100):
        histogram.record(value)
    assert histogram.percentile(50) == 3
    assert histogram.percentile(100) == 100
    assert histogram.summary_ms()["max"] == pytest.approx(0.1)


def test_memory_is_bounded_whatever_is_recorded() -> None:
    histogram = Histogram(sub_bits=8)
    for exponent in range(40):
        for step in range(1000):
            histogram.record((1 << exponent) + step * (1 << exponent) // 1000)
    assert len(histogram.counts) <= 64 * 128


def test_merge_equals_recording_into_one() -> None:
    left, right, both = Histogram(), Histogram(), Histogram()
    for value in range(0, 100_000, 37):
        (left if value % 2 else right).record(value)
        both.record(value)
    left.merge(right)
    assert left.counts == both.counts
    assert left.total == both.total and left.max_us == both.max_us and left.min_us == both.min_us
    with pytest.raises(ValueError, match="bits"):
        left.merge(Histogram(sub_bits=6))
