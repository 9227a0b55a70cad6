"""The Orthanc plugin (integrations/orthanc/ledger_gate.py) inside a real Orthanc: study
data only with a valid ledger decision token for that study, checked offline against the
ledger's JWKS; after a withdrawal a fresh authorize denies and the PACS refuses."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.access import tokens
from ledger.access.decision_tokens import DECISION_AUDIENCE, DECISION_TYP
from ledger.config import Settings
from ledger.consent import csv_import
from ledger.db import transaction
from ledger.images import service as images
from ledger.images import synthetic
from ledger.images.store import FilesystemStore
from ledger.keystore import create_keys, load_keyring
from ledger.principals.models import Role
from ledger.server import create_app
from tests.access.test_access_api import HEADER, ISSUER
from tests.access.test_release import _subject_of, _withdraw_all
from tests.conftest import MakePrincipal, auth
from tests.orthanc import DICOMWEB_PLUGIN, PYTHON_PLUGIN, USER, Orthanc
from tests.threaded import serve

PLUGIN = Path(__file__).resolve().parents[2] / "integrations" / "orthanc" / "ledger_gate.py"
STUDIES = {"PA": "1.2.826.0.5.1", "PB": "1.2.826.0.5.2"}


def _files(patient: str, study: str) -> list[bytes]:
    rng = random.Random(study)
    return [
        synthetic.instance(
            patient_id=patient,
            issuer=ISSUER,
            modality="CT",
            body_part="CHEST",
            study_date=date(2024, 5, 1),
            study_uid=study,
            series_uid=f"{study}.1",
            number=n + 1,
            rng=rng,
        )
        for n in range(2)
    ]


@pytest.fixture
def ledger_url(settings: Settings, engine: Engine) -> Iterator[str]:
    keys = load_keyring(settings.keys_dir)
    rows = "".join(f"{ISSUER},{p},permit,ai,\n" for p in STUDIES)
    with transaction(engine) as session:
        csv_import.import_rows(
            session, keys.pseudonym_key, csv_import.parse(HEADER + rows), actor="t"
        )
        for patient, study in STUDIES.items():
            for data in _files(patient, study):
                images.ingest(
                    session,
                    FilesystemStore(settings.objects_dir),
                    keys,
                    data,
                    default_issuer=ISSUER,
                    actor="t",
                )
    with serve(create_app(settings)) as url:
        yield url


def _pacs(root: Path, ledger_url: str, **gate: Any) -> Orthanc:
    return Orthanc(
        root,
        plugins=(DICOMWEB_PLUGIN, PYTHON_PLUGIN),
        extra={
            "PythonScript": str(PLUGIN),
            "LedgerGate": {
                "JwksUrl": f"{ledger_url}/.well-known/jwks.json",
                "Purposes": ["ai.inference"],
                **gate,
            },
        },
    )


@pytest.fixture
def pacs(tmp_path: Path, ledger_url: str) -> Iterator[Orthanc]:
    orthanc = _pacs(tmp_path / "orthanc", ledger_url).start()
    try:
        yield orthanc
    finally:
        orthanc.stop()


def _authorize(ledger_url: str, key: str, study: str) -> dict[str, Any]:
    r = httpx.post(
        f"{ledger_url}/v1/authorize",
        headers=auth(key),
        json={"purpose": "ai.inference", "study_instance_uid": study},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _get(pacs: Orthanc, path: str, token: str | None) -> int:
    headers = {"Ledger-Decision": token} if token is not None else {}
    r = httpx.get(f"{pacs.url}{path}", auth=pacs.auth, headers=headers, timeout=30)
    return r.status_code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _resign(settings: Settings, token: str, **changes: Any) -> str:
    """A token signed with the ledger's own key but with claims changed (e.g. expired)."""
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return tokens.sign(load_keyring(settings.keys_dir), DECISION_TYP, {**claims, **changes})


def test_the_pacs_serves_a_study_only_with_a_permit_for_it(
    settings: Settings,
    client: TestClient,
    make_principal: MakePrincipal,
    ledger_url: str,
    pacs: Orthanc,
    tmp_path: Path,
) -> None:
    uploaded = {p: pacs.upload(_files(p, s)) for p, s in STUDIES.items()}
    key = make_principal(Role.pipeline)
    study_a, study_b = STUDIES["PA"], STUDIES["PB"]
    permit = _authorize(ledger_url, key, study_a)
    assert permit["decision"] == "permit"
    token = permit["token"]

    # Permitted: DICOMweb and REST routes of study A.
    assert _get(pacs, f"/dicom-web/studies/{study_a}/metadata", token) == 200
    assert _get(pacs, f"/dicom-web/studies/{study_a}", token) == 200
    assert _get(pacs, f"/instances/{uploaded['PA'][0]}/file", token) == 200
    assert _get(pacs, f"/instances/{uploaded['PA'][0]}", token) == 200

    # Refused: no token, a forged one, an expired one, another study's, another purpose.
    assert _get(pacs, f"/dicom-web/studies/{study_a}/metadata", None) == 403
    assert _get(pacs, f"/instances/{uploaded['PA'][0]}/file", None) == 403
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["study_sha256"] = hashlib.sha256(study_b.encode()).hexdigest()
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert _get(pacs, f"/dicom-web/studies/{study_b}/metadata", tampered) == 403
    other_home = tmp_path / "elsewhere"
    create_keys(other_home / "keys")
    forged = tokens.sign(load_keyring(other_home / "keys"), DECISION_TYP, claims)
    assert _get(pacs, f"/dicom-web/studies/{study_b}/metadata", forged) == 403
    expired = _resign(settings, token, exp=int(time.time()) - 120, iat=int(time.time()) - 600)
    assert _get(pacs, f"/dicom-web/studies/{study_a}/metadata", expired) == 403
    assert _get(pacs, f"/dicom-web/studies/{study_b}/metadata", token) == 403
    assert _get(pacs, f"/instances/{uploaded['PB'][0]}/file", token) == 403
    generative = _resign(settings, token, purpose="ai.generative")
    assert _get(pacs, f"/dicom-web/studies/{study_a}/metadata", generative) == 403
    wrong_typ = tokens.sign(
        load_keyring(settings.keys_dir), tokens.GRANT_TYP, {**claims, "aud": DECISION_AUDIENCE}
    )
    assert _get(pacs, f"/dicom-web/studies/{study_b}/metadata", wrong_typ) == 403
    # Routes across studies are refused whatever the token.
    assert _get(pacs, "/studies", token) == 403
    assert _get(pacs, "/dicom-web/studies", token) == 403
    assert _get(pacs, "/system", None) == 200  # not study data

    # A withdrawal: a fresh authorize denies, and the PACS refuses the deny token.
    registrar = make_principal(Role.registrar)
    _withdraw_all(client, registrar, _subject_of(client, registrar, "PA"))
    denied = _authorize(ledger_url, key, study_a)
    assert denied["decision"] == "deny"
    assert _get(pacs, f"/dicom-web/studies/{study_a}/metadata", denied["token"]) == 403
    assert _get(pacs, f"/dicom-web/studies/{study_b}/metadata", token) == 403
    permit_b = _authorize(ledger_url, key, study_b)["token"]
    assert _get(pacs, f"/dicom-web/studies/{study_b}/metadata", permit_b) == 200


def test_recheck_refuses_a_still_valid_permit_after_a_withdrawal(
    client: TestClient,
    make_principal: MakePrincipal,
    ledger_url: str,
    tmp_path: Path,
) -> None:
    gate_key = tmp_path / "ledger-api-key"
    gate_key.write_text(make_principal(Role.pipeline) + "\n")
    pacs = _pacs(
        tmp_path / "rechecking",
        ledger_url,
        Recheck={"Url": ledger_url, "ApiKeyFile": str(gate_key)},
    ).start()
    try:
        pacs.upload(_files("PA", STUDIES["PA"]))
        key = make_principal(Role.pipeline)
        token = _authorize(ledger_url, key, STUDIES["PA"])["token"]
        path = f"/dicom-web/studies/{STUDIES['PA']}/metadata"
        assert _get(pacs, path, token) == 200
        registrar = make_principal(Role.registrar)
        _withdraw_all(client, registrar, _subject_of(client, registrar, "PA"))
        assert _get(pacs, path, token) == 403  # the token has not expired; the ledger says no
    finally:
        pacs.stop()


def test_allowed_users_pass_without_a_token_but_still_need_their_password(
    tmp_path: Path, ledger_url: str
) -> None:
    """E.g. the ledger's own sync account, which lists studies across the PACS."""
    pacs = _pacs(tmp_path / "allowing", ledger_url, AllowUsers=[USER]).start()
    try:
        pacs.upload(_files("PA", STUDIES["PA"]))
        assert httpx.get(f"{pacs.dicomweb}/studies", auth=pacs.auth).status_code == 200
        wrong = httpx.get(f"{pacs.dicomweb}/studies", auth=(USER, "not-the-password"))
        assert wrong.status_code == 401
    finally:
        pacs.stop()
