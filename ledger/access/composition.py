"""The composition report: how consent filtering changed who is in the data.

If the patients who consent differ from those who do not (older, from one site, scanned on
one vendor's machines), a model trained on the eligible set inherits that skew. Stewards see,
per attribute, the share of each group before and after filtering and the total variation
distance between the two distributions, with a warning above a threshold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

ATTRIBUTES = ("sex", "age_band", "site", "modality", "manufacturer")
UNKNOWN = "unknown"
IntArray = npt.NDArray[np.intp]


def age_band(birth_year: int | None, study_year: int | None) -> str:
    """Ten-year bands at the time of the study; coarse on purpose (no re-identification)."""
    if birth_year is None or study_year is None or study_year < birth_year:
        return UNKNOWN
    age = study_year - birth_year
    if age >= 90:
        return "90+"
    low = (age // 10) * 10
    return f"{low}-{low + 9}"


BANDS = [f"{low}-{low + 9}" for low in range(0, 90, 10)] + ["90+", UNKNOWN]
Marginals = Mapping[str, Mapping[str, int]]  # attribute → value → images


def age_band_codes(birth_year: npt.NDArray[Any], study_year: npt.NDArray[Any]) -> IntArray:
    """``age_band`` for many images at once, as indexes into ``BANDS``; a negative year
    means unknown."""
    age = study_year.astype(np.int64) - birth_year
    known = (birth_year >= 0) & (study_year >= 0) & (age >= 0)
    return np.where(known, np.minimum(age // 10, 9), len(BANDS) - 1).astype(np.intp)


def counts(codes: npt.NDArray[Any], labels: Sequence[str | None]) -> Counter[str]:
    """Images per value of one attribute, from per-image codes into ``labels`` (an absent
    or empty value counts as unknown)."""
    out: Counter[str] = Counter()
    for code, n in enumerate(np.bincount(codes, minlength=len(labels)).tolist()):
        if n:
            out[labels[code] or UNKNOWN] += n
    return out


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


def report(requested: Marginals, eligible: Marginals, threshold: float) -> dict[str, Any]:
    """Counts, shares and distance per attribute from both sets' counts per value."""
    attributes: dict[str, Any] = {}
    warnings: list[str] = []
    for name in ATTRIBUTES:
        before, after = requested.get(name, {}), eligible.get(name, {})
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


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0
