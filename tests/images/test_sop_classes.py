from __future__ import annotations

import pytest

from ledger.images.sop_classes import header_quarantine, is_secondary_capture


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        ("1.2.840.10008.5.1.4.1.1.7", True),
        ("1.2.840.10008.5.1.4.1.1.7.4", True),  # multi-frame true colour SC
        ("1.2.840.10008.5.1.4.1.1.77.1.4", False),  # VL photographic: shares the text prefix
        ("1.2.840.10008.5.1.4.1.1.2", False),
        ("", False),
        (None, False),
    ],
)
def test_secondary_capture_is_matched_by_uid_components(uid: str | None, expected: bool) -> None:
    assert is_secondary_capture(uid) is expected


@pytest.mark.parametrize(
    ("uid", "burned_in", "reason"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "YES", "BurnedInAnnotation is YES"),
        ("1.2.840.10008.5.1.4.1.1.7", None, "secondary capture without BurnedInAnnotation NO"),
        ("1.2.840.10008.5.1.4.1.1.7", "no", None),
        ("1.2.840.10008.5.1.4.1.1.77.1.4", None, None),
        ("1.2.840.10008.5.1.4.1.1.2", None, None),
    ],
)
def test_header_quarantine_is_one_rule(uid: str, burned_in: str | None, reason: str | None) -> None:
    assert header_quarantine(uid, burned_in) == reason
