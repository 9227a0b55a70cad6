from __future__ import annotations

import numpy as np
import pytest

from ledger.access.composition import (
    BANDS,
    age_band,
    age_band_codes,
    counts,
    report,
    total_variation,
)


def marginals(**sexes: int) -> dict[str, dict[str, int]]:
    total = sum(sexes.values())
    return {"sex": sexes, "site": {"A": total}, "modality": {"CT": total}}


def test_age_bands_are_coarse_and_tolerate_missing_data() -> None:
    assert age_band(1980, 2024) == "40-49"
    assert age_band(1930, 2024) == "90+"
    assert age_band(None, 2024) == "unknown"
    assert age_band(2030, 2024) == "unknown"


def test_vectorised_age_bands_agree_with_the_scalar_rule() -> None:
    births = [1980, 1930, -1, 2030, 2000, 1990]
    studies = [2024, 2024, 2024, 2024, -1, 1999]
    codes = age_band_codes(np.array(births), np.array(studies))
    expected = [
        age_band(b if b >= 0 else None, s if s >= 0 else None)
        for b, s in zip(births, studies, strict=True)
    ]
    assert [BANDS[c] for c in codes] == expected


def test_counts_merge_absent_and_empty_values_as_unknown() -> None:
    assert counts(np.array([0, 1, 1, 2]), [None, "CT", ""]) == {"unknown": 2, "CT": 2}


def test_total_variation_bounds() -> None:
    assert total_variation({"a": 5}, {"a": 1}) == 0.0
    assert total_variation({"a": 1}, {"b": 1}) == 1.0
    assert total_variation({"a": 1, "b": 1}, {"a": 1}) == pytest.approx(0.5)
    assert total_variation({}, {}) == 0.0
    assert total_variation({"a": 3}, {}) == 1.0


def test_filtering_that_removes_one_sex_warns() -> None:
    requested = marginals(F=50, M=50)
    eligible = marginals(F=50)
    out = report(requested, eligible, threshold=0.1)
    sex = out["attributes"]["sex"]
    assert sex["distance"] == pytest.approx(0.5)
    assert {g["value"]: g["eligible_share"] for g in sex["groups"]} == {"F": 1.0, "M": 0.0}
    assert any("sex" in w for w in out["warnings"])
    assert out["attributes"]["site"]["distance"] == 0.0
    assert out["max_distance"] == pytest.approx(0.5)


def test_proportional_filtering_does_not_warn() -> None:
    requested = marginals(F=40, M=60)
    eligible = marginals(F=20, M=30)
    assert report(requested, eligible, threshold=0.05)["warnings"] == []
