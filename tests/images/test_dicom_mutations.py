"""Property test: damaged DICOM never makes a 500 at ingest, never leaves an object behind,
and never stops a ``ledger deid`` batch with a traceback.

Each example takes one valid CT file and damages it the way files are damaged in the wild
(truncated, bytes overwritten in the header where tags, VRs and lengths live, bytes
inserted), then posts it and de-identifies it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from ledger.config import Settings
from ledger.db import snapshot
from ledger.images.deid import Deidentifier
from ledger.images.deid_files import Summary, deidentify_file
from ledger.images.models import Image
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth
from tests.images.dicom_factory import ct_dataset


def _valid() -> bytes:
    ds = ct_dataset("MRN-MUT-1", rows=16)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


VALID = _valid()
HEADER_END = VALID.find(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data: damage before it
# pydicom warns about every odd value it reads; the outcomes are what is asserted.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

damage = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, len(VALID) - 1), st.just(b"")),
    st.tuples(
        st.just("overwrite"),
        st.integers(128, HEADER_END),
        st.binary(min_size=1, max_size=8),
    ),
    st.tuples(st.just("insert"), st.integers(128, HEADER_END), st.binary(min_size=1, max_size=8)),
)


def damaged(kind: str, at: int, data: bytes) -> bytes:
    if kind == "truncate":
        return VALID[:at]
    if kind == "overwrite":
        return VALID[:at] + data + VALID[at + len(data) :]
    return VALID[:at] + data + VALID[at:]


def _stored(engine: Engine, objects_dir: Path) -> tuple[int, int]:
    objects = sum(1 for p in objects_dir.rglob("*") if p.is_file())
    with snapshot(engine) as session:
        rows = int(session.execute(select(func.count()).select_from(Image)).scalar_one())
    return objects, rows


@pytest.fixture
def curator(make_principal: MakePrincipal) -> dict[str, str]:
    return auth(make_principal(Role.curator))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=damage)
def test_damaged_files_get_a_4xx_and_leave_nothing(
    mutation: tuple[str, int, bytes],
    client: TestClient,
    curator: dict[str, str],
    engine: Engine,
    settings: Settings,
) -> None:
    before = _stored(engine, settings.objects_dir)
    response = client.post(
        "/v1/images",
        content=damaged(*mutation),
        headers={**curator, "Content-Type": "application/dicom"},
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert _stored(engine, settings.objects_dir) == before


@settings(max_examples=60, deadline=None, derandomize=True)
@given(mutation=damage)
def test_damaged_files_are_accounted_for_in_a_deid_batch(
    mutation: tuple[str, int, bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("mutated")
    src = work / "in" / "damaged.dcm"
    src.parent.mkdir()
    src.write_bytes(damaged(*mutation))
    summary = Summary()
    report = deidentify_file(
        Deidentifier(b"k" * 32), src, work / "out", Path("damaged.dcm"), summary
    )
    assert report.outcome is not None
    if report.output is None:
        assert report.reasons, "a file that was not written says why"
    else:
        written = work / "out" / report.output
        pydicom.dcmread(written)  # what was written is readable DICOM
