from __future__ import annotations

import pytest

from ledger.access.composition import Profile, age_band, report, total_variation


def profile(sex: str = "F", site: str = "A", modality: str = "CT") -> Profile:
    return Profile(sex=sex, age_band="40-49", site=site, modality=modality, manufacturer="X")


def test_age_bands_are_coarse_and_tolerate_missing_data() -> None:
    assert age_band(1980, 2024) == "40-49"
    assert age_band(1930, 2024) == "90+"
    assert age_band(None, 2024) == "unknown"
    assert age_band(2030, 2024) == "unknown"


def test_total_variation_bounds() -> None:
    assert total_variation({"a": 5}, {"a": 1}) == 0.0
    assert total_variation({"a": 1}, {"b": 1}) == 1.0
    assert total_variation({"a": 1, "b": 1}, {"a": 1}) == pytest.approx(0.5)
    assert total_variation({}, {}) == 0.0
    assert total_variation({"a": 3}, {}) == 1.0


def test_filtering_that_removes_one_sex_warns() -> None:
    requested = {profile("F"): 50, profile("M"): 50}
    eligible = {profile("F"): 50}
    out = report(requested, eligible, threshold=0.1)
    sex = out["attributes"]["sex"]
    assert sex["distance"] == pytest.approx(0.5)
    assert {g["value"]: g["eligible_share"] for g in sex["groups"]} == {"F": 1.0, "M": 0.0}
    assert any("sex" in w for w in out["warnings"])
    assert out["attributes"]["site"]["distance"] == 0.0
    assert out["max_distance"] == pytest.approx(0.5)


def test_proportional_filtering_does_not_warn() -> None:
    requested = {profile("F"): 40, profile("M"): 60}
    eligible = {profile("F"): 20, profile("M"): 30}
    assert report(requested, eligible, threshold=0.05)["warnings"] == []
