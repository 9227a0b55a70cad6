"""A real Orthanc forwards a study to the ledger with STOW-RS (its DICOMweb plugin's
``/dicom-web/servers/{name}/stow``), through the route a PACS would use."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from ledger.config import Settings
from ledger.db import snapshot
from ledger.images.models import Image
from ledger.principals.models import Role
from ledger.server import create_app
from tests.conftest import MakePrincipal
from tests.images.test_stow import files
from tests.orthanc import Orthanc
from tests.threaded import serve


def test_orthanc_forwards_a_study_with_stow(
    settings: Settings, engine: Engine, make_principal: MakePrincipal, tmp_path: Path
) -> None:
    curator = make_principal(Role.curator)
    sent = files(3, seed=5)
    with serve(create_app(settings)) as ledger:
        pacs = Orthanc(
            tmp_path / "orthanc",
            extra={
                "DicomWeb": {
                    "Enable": True,
                    "Root": "/dicom-web/",
                    "Servers": {
                        "ledger": {
                            "Url": f"{ledger}/v1/dicomweb/",
                            "HttpHeaders": {"Authorization": f"Bearer {curator}"},
                        }
                    },
                }
            },
        ).start()
        try:
            ids = pacs.upload(sent)
            r = httpx.post(
                f"{pacs.url}/dicom-web/servers/ledger/stow",
                auth=pacs.auth,
                json={"Resources": ids, "Synchronous": True},
                timeout=60,
            )
            assert r.status_code == 200, r.text
        finally:
            pacs.stop()
    with snapshot(engine) as session:
        stored = session.execute(select(func.count()).select_from(Image)).scalar_one()
    assert stored == 3
