"""SOP classes that decide how an image is treated before release."""

from __future__ import annotations

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
# Reasons, worded once: de-identification, release and the pixel check count files by them.
BURNED_IN_YES = "BurnedInAnnotation is YES"
SECONDARY_CAPTURE_NOT_NO = "secondary capture without BurnedInAnnotation NO"


def is_secondary_capture(sop_class: str | None) -> bool:
    """Secondary Capture and its multi-frame kinds (``...1.7`` and ``...1.7.n``), not the
    visible-light classes (``...1.77...``) that share the text prefix."""
    uid = (sop_class or "").strip()
    return uid == SECONDARY_CAPTURE or uid.startswith(SECONDARY_CAPTURE + ".")


def header_quarantine(sop_class: str | None, burned_in: str | None) -> str | None:
    """Why the header alone says an image may show text in its pixels, or None.

    De-identification applies it to the file and release to the index's copy of the same
    two attributes, so release can refuse before anything is decrypted."""
    burned = (burned_in or "").strip().upper()
    if burned == "YES":
        return BURNED_IN_YES
    if is_secondary_capture(sop_class) and burned != "NO":
        return SECONDARY_CAPTURE_NOT_NO
    return None
