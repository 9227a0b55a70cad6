"""The spliced release render (``release_render``) gives exactly what the whole-file path
(``archive.render``) gives: the same bytes, the same quarantine decisions, over pydicom's
own test files (implicit and explicit VR, big endian, encapsulated, deflated, trailing
elements after the pixel data, a sequence delimiter inside the pixel data, no file meta)
and synthetic images; and ``attributes`` is that file's header as DICOM JSON."""

from __future__ import annotations

import io
import random
from datetime import date
from pathlib import Path

import pydicom
import pytest

from ledger.access import release_render
from ledger.access.archive import Quarantined, render
from ledger.access.release_profile import GENERATIVE_OPTIONS
from ledger.images import synthetic
from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier
from ledger.images.store import FilesystemStore
from tests.sealed import sealed

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _corpus() -> list[tuple[str, bytes]]:
    files = [(p.name, p.read_bytes()) for p in sorted(PYDICOM_FILES.rglob("*.dcm"))]
    rng = random.Random(3)
    for modality in ("CT", "MR", "DX"):
        for n in range(2):
            files.append(
                (
                    f"synthetic-{modality}-{n}",
                    synthetic.instance(
                        patient_id=f"R{n}",
                        issuer="urn:test",
                        modality=modality,
                        body_part="CHEST",
                        study_date=date(2024, 2, 1 + n),
                        study_uid="1.2.826.0.99.1",
                        series_uid=f"1.2.826.0.99.1.{len(modality) + n}",
                        number=n + 1,
                        rng=rng,
                        size=32,
                    ),
                )
            )
    return files


def _outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except Quarantined as exc:
        return ("quarantined", tuple(exc.reasons))
    except Exception as exc:  # the whole-file path's own errors must be the splice's too
        return ("error", type(exc).__name__)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("options", [DEFAULT_OPTIONS, GENERATIVE_OPTIONS], ids=["ai", "generative"])
def test_the_splice_gives_the_bytes_of_the_whole_file_path(
    tmp_path: Path, options: frozenset[object]
) -> None:
    store = FilesystemStore(tmp_path)
    engine = Deidentifier(b"r" * 32, options)  # type: ignore[arg-type]
    compared = spliced = quarantined = 0
    for name, data in _corpus():
        item = sealed(store, data, name)
        want = _outcome(render, store, engine, item)
        if isinstance(want, bytes) and want != render(store, engine, item):
            continue  # no patient identity at all: a random pseudonym each time
        got = _outcome(release_render.render, store, engine, item)
        assert got == want, name
        compared += 1
        quarantined += isinstance(want, tuple)
        if isinstance(want, bytes):
            spliced += release_render._spliced(data, engine) is not None
        if isinstance(want, bytes):
            released = pydicom.dcmread(io.BytesIO(want), force=True)
            for keyword in release_render.BULK_KEYWORDS:
                if keyword in released:
                    del released[keyword]
            assert release_render.attributes(store, engine, item) == released.to_json_dict(
                bulk_data_threshold=1 << 30, suppress_invalid_tags=True
            ), name
        else:
            with pytest.raises(Quarantined):
                release_render.attributes(store, engine, item)
    # The corpus exercises both paths, and quarantine.
    assert compared >= 60, compared
    assert spliced >= 10, spliced
    assert quarantined >= 20, quarantined


def test_pieces_are_the_header_then_a_view_of_the_original_pixel_element(tmp_path: Path) -> None:
    data = synthetic.instance(
        patient_id="R9",
        issuer="urn:test",
        modality="CT",
        body_part="HEAD",
        study_date=date(2024, 3, 1),
        study_uid="1.2.826.0.99.2",
        series_uid="1.2.826.0.99.2.1",
        number=1,
        rng=random.Random(1),
        size=64,
    )
    store = FilesystemStore(tmp_path)
    header, pixels = release_render.render_pieces(
        store, Deidentifier(b"r" * 32), sealed(store, data)
    )
    assert isinstance(pixels, memoryview)
    assert len(pixels) > 64 * 64 * 2
    assert data.endswith(bytes(pixels))
    assert b"R9" not in header
    assert b"ANON-" in header


def test_a_planted_preamble_is_released_as_zeros(tmp_path: Path) -> None:
    """The 128 free bytes before ``DICM`` are copied by no release path."""
    data = synthetic.instance(
        patient_id="R7",
        issuer="urn:test",
        modality="CT",
        body_part="HEAD",
        study_date=date(2024, 3, 1),
        study_uid="1.2.826.0.99.3",
        series_uid="1.2.826.0.99.3.1",
        number=1,
        rng=random.Random(2),
        size=32,
    )
    planted = b"PREAMBLE-PHI-DOE^JANE-MRN-4711".ljust(128, b"#")
    data = planted + data[128:]
    store = FilesystemStore(tmp_path)
    item = sealed(store, data)
    engine = Deidentifier(b"p" * 32)
    for out in (release_render.render(store, engine, item), render(store, engine, item)):
        assert out[:132] == b"\x00" * 128 + b"DICM"
        assert b"PREAMBLE-PHI" not in out
        assert b"MRN-4711" not in out
