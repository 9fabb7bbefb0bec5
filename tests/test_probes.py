"""Linear probes: they find what vectors hold and report chance where they hold nothing."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec.evaluate.probes import attribute_probe, taste_probe


def test_attribute_probe_reads_a_linearly_coded_attribute_and_not_noise():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=400)
    centres = rng.standard_normal((4, 8)) * 3
    coded = centres[codes] + rng.standard_normal((400, 8))
    found = attribute_probe(coded, codes)
    assert found["classes"] == 4 and found["held_out"] == 120
    assert found["accuracy"] > 0.95
    noise = attribute_probe(rng.standard_normal((400, 8)), codes)
    assert noise["accuracy"] < 0.45  # near chance (0.25), far below the coded vectors
    assert 0.15 < noise["majority"] < 0.45


def test_taste_probe_gives_r2_one_for_a_linear_map_and_about_zero_for_noise():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 6))
    tastes = vectors @ rng.standard_normal((6, 5)) + 2.0
    assert taste_probe(vectors, tastes)["r2"] > 0.99
    assert abs(taste_probe(rng.standard_normal((300, 6)), tastes)["r2"]) < 0.15


def test_probes_refuse_mismatched_or_too_few_rows():
    with pytest.raises(ValueError, match="3 vectors but 4 codes"):
        attribute_probe(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="at least 4 rows"):
        taste_probe(np.zeros((3, 2)), np.zeros((3, 1)))
