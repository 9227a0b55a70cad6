from __future__ import annotations

import pytest

from ledger.images.sop_classes import is_secondary_capture


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
