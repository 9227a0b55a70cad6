"""The composition report: how consent filtering changed who is in the data.

If the patients who consent differ from those who do not (older, from one site, scanned on
one vendor's machines), a model trained on the eligible set inherits that skew. Stewards see,
per attribute, the share of each group before and after filtering and the total variation
distance between the two distributions, with a warning above a threshold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ATTRIBUTES = ("sex", "age_band", "site", "modality", "manufacturer")
UNKNOWN = "unknown"


def age_band(birth_year: int | None, study_year: int | None) -> str:
    """Ten-year bands at the time of the study; coarse on purpose (no re-identification)."""
    if birth_year is None or study_year is None or study_year < birth_year:
        return UNKNOWN
    age = study_year - birth_year
    if age >= 90:
        return "90+"
    low = (age // 10) * 10
    return f"{low}-{low + 9}"


@dataclass(frozen=True)
class Profile:
    """One image's demographic coordinates."""

    sex: str
    age_band: str
    site: str
    modality: str
    manufacturer: str


def total_variation(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Half the L1 distance between the two normalised distributions (0 = same, 1 = disjoint).

    An empty side has no distribution; comparing against it is reported as maximal shift
    when the other side is not empty.
    """
    total_a, total_b = sum(a.values()), sum(b.values())
    if total_a == 0 and total_b == 0:
        return 0.0
    if total_a == 0 or total_b == 0:
        return 1.0
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0) / total_a - b.get(k, 0) / total_b) for k in keys)


def report(
    requested: Mapping[Profile, int], eligible: Mapping[Profile, int], threshold: float
) -> dict[str, Any]:
    """Counts, shares and distance per attribute from profile counts of both sets."""
    attributes: dict[str, Any] = {}
    warnings: list[str] = []
    for name in ATTRIBUTES:
        before = _marginal(requested.items(), name)
        after = _marginal(eligible.items(), name)
        distance = round(total_variation(before, after), 4)
        total_before, total_after = sum(before.values()), sum(after.values())
        groups = [
            {
                "value": value,
                "requested": before.get(value, 0),
                "requested_share": _share(before.get(value, 0), total_before),
                "eligible": after.get(value, 0),
                "eligible_share": _share(after.get(value, 0), total_after),
            }
            for value in sorted(set(before) | set(after))
        ]
        attributes[name] = {"distance": distance, "groups": groups}
        if distance > threshold:
            warnings.append(
                f"consent filtering shifted the {name.replace('_', ' ')} distribution by "
                f"{distance:.1%} (total variation), above the {threshold:.0%} threshold"
            )
    return {
        "threshold": threshold,
        "attributes": attributes,
        "max_distance": max((a["distance"] for a in attributes.values()), default=0.0),
        "warnings": warnings,
    }


def _marginal(items: Iterable[tuple[Profile, int]], name: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for profile, n in items:
        counts[getattr(profile, name)] += n
    return counts


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0
