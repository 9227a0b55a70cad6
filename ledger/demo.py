"""Demo installation: one principal per role, so a new user can try every route at once."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger import wiring
from ledger.access import service as access
from ledger.access.classes import Outcomes
from ledger.access.models import AccessRequest
from ledger.access.schemas import AccessRequestCreate
from ledger.config import Settings
from ledger.consent import csv_import, service, subjects
from ledger.consent.models import ConsentVersion
from ledger.consent.schemas import ConsentContent, Decision, Scope, WithdrawBody
from ledger.db import make_engine, redacted, transaction
from ledger.home import init_home
from ledger.images import datasets, synthetic
from ledger.images import service as images
from ledger.images.models import DatasetImage, Image
from ledger.policy.service import activate
from ledger.principals import service as principals
from ledger.principals.models import PrincipalKind, Role
from ledger.principals.schemas import PrincipalCreate
from ledger.provenance import checkpoints

DEMO_PRINCIPALS: list[tuple[str, PrincipalKind, list[Role]]] = [
    ("registrar", PrincipalKind.person, [Role.registrar]),
    ("curator", PrincipalKind.person, [Role.curator]),
    ("steward", PrincipalKind.person, [Role.steward]),
    ("steward-2", PrincipalKind.person, [Role.steward]),
    ("pipeline", PrincipalKind.pipeline, [Role.pipeline]),
    ("auditor", PrincipalKind.person, [Role.auditor]),
]


DEMO_PATIENTS = 300
DEMO_ISSUER = "urn:oid:2.16.840.1.113883.19.5.99999.1"


@dataclass
class Demo:
    home: str
    database: str = ""  # its URL, password hidden
    keys: dict[str, str] = field(default_factory=dict)
    subjects: int = 0
    consents: int = 0
    withdrawn: int = 0
    images: int = 0
    dataset_id: str | None = None
    request_id: str | None = None
    walkthrough_patient: str | None = None
    example_subject: str | None = None  # DEMO00001's subject id, for the printed examples


def _demo_consents(rng: random.Random) -> list[csv_import.Row]:
    """A plausible registry: most patients permit AI use, a fifth refuse generative AI,
    some limit use to CT/MR or to health research, some refuse everything."""
    rows: list[csv_import.Row] = []
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(DEMO_PATIENTS):
        demographics = subjects.Demographics(
            rng.choice("FM"), rng.randint(1935, 2005), rng.choice(["north", "south", "east"])
        )
        patient = subjects.PatientRef(DEMO_ISSUER, f"DEMO{i:05d}", demographics)
        since = start + timedelta(days=rng.randint(0, 600))
        roll = rng.random()
        if roll < 0.08:
            contents = [ConsentContent(decision=Decision.deny, purposes=["ai"], valid_from=since)]
        elif roll < 0.30:
            contents = [
                ConsentContent(
                    decision=Decision.permit,
                    purposes=["ai.development", "HMB"],
                    modifiers=["NCU"],
                    scope=Scope(modalities=["CT", "MR"]),
                    valid_from=since,
                )
            ]
        elif roll < 0.40:
            contents = [
                ConsentContent(
                    decision=Decision.permit,
                    purposes=["ai.inference"],
                    valid_from=since,
                    valid_until=since + timedelta(days=3 * 365),
                )
            ]
        else:
            contents = [ConsentContent(decision=Decision.permit, purposes=["ai"], valid_from=since)]
        if rng.random() < 0.2 and contents[0].decision == Decision.permit:
            contents.append(
                ConsentContent(decision=Decision.deny, purposes=["ai.generative"], valid_from=since)
            )
        elif rng.random() < 0.05:
            contents.append(
                ConsentContent(
                    decision=Decision.permit, purposes=["ai.generative"], valid_from=since
                )
            )
        rows.extend(csv_import.Row(i + 2, patient, c) for c in contents)
    return rows


def _patient_in(session: Session, key: bytes, request: AccessRequest) -> str | None:
    """A demo patient with an image eligible under ``request``: the walkthrough withdraws
    their consent and shows the release refused."""
    eligible = {
        image_id
        for image_id, cls in zip(
            session.execute(
                select(col(DatasetImage.image_id))
                .where(col(DatasetImage.dataset_id) == request.dataset_id)
                .order_by(col(DatasetImage.position))
            ).scalars(),
            Outcomes.stored(request.classes, request.outcomes),
            strict=True,
        )
        if cls.eligible
    }
    for i in range(DEMO_PATIENTS):
        patient = f"DEMO{i:05d}"
        subject = subjects.find(session, key, DEMO_ISSUER, patient)
        if subject is None:
            continue
        mine = session.execute(
            select(col(Image.id)).where(col(Image.subject_id) == subject.id)
        ).scalars()
        if eligible.intersection(mine):
            return patient
    return None


WALKTHROUGH = """\
# The whole story in one script: request -> approve -> download -> a patient withdraws ->
# the release is refused and the revocation is listed. Run it while the server runs.
from datetime import UTC, datetime
import httpx
from ledger.client import LedgerAPIError, LedgerClient

BASE, DATASET, PATIENT, ISSUER = {base!r}, {dataset!r}, {patient!r}, {issuer!r}
KEYS = {keys!r}
start = datetime.now(UTC)
pipeline = LedgerClient(BASE, KEYS["pipeline"])
request = pipeline.request_access(DATASET, "ai.training", "Walkthrough: chest CT triage model")
print("1. request", request["id"], "evaluated:", request["evaluation"]["eligible_count"],
      "eligible, excluded by reason", request["evaluation"]["excluded_by_reason"])
steward = httpx.Client(base_url=BASE, headers={{"Authorization": "Bearer " + KEYS["steward"]}})
approved = steward.post(f"/v1/access-requests/{{request['id']}}/approve",
                        json={{"comment": "walkthrough"}}).json()
print("2. a steward approved it: grant", approved["grant_id"])
grant = pipeline.wait_for_grant(request["id"], poll=1)
report = pipeline.download(grant, "walkthrough-images")
print("3. downloaded", report.downloaded, "de-identified files to walkthrough-images/")
registrar = httpx.Client(base_url=BASE,
                         headers={{"Authorization": "Bearer " + KEYS["registrar"]}})
subject = registrar.post("/v1/subjects/lookup",
                         json={{"issuer": ISSUER, "patient_id": PATIENT}}).json()
for consent in registrar.get(f"/v1/subjects/{{subject['id']}}/consents").json()["consents"]:
    registrar.post(f"/v1/consents/{{consent['id']}}/withdraw", json={{"reason": "walkthrough"}})
print("4. patient", PATIENT, "withdrew consent")
again = pipeline.download(grant, "walkthrough-images")
print("5. the next download deleted their local copies:", again.removed)
try:
    pipeline.instance(grant, again.removed[0])
except LedgerAPIError as refused:
    print("6. fetching one of them now:", refused)
changes = pipeline.revocations(start)
print("7. revocations since the start:", changes["instances"])
"""


def walkthrough(demo: Demo, base: str) -> str:
    return WALKTHROUGH.format(
        base=base,
        dataset=demo.dataset_id,
        patient=demo.walkthrough_patient,
        issuer=DEMO_ISSUER,
        keys={k: demo.keys[k] for k in ("pipeline", "steward", "registrar")},
    )


def build_demo(settings: Settings) -> Demo:
    created = init_home(settings)
    demo = Demo(
        home=created.home,
        database=redacted(created.database_url),
        keys={"admin": created.admin.api_key},
    )
    engine = make_engine(settings.resolved_database_url)
    try:
        with transaction(engine) as session:
            for name, kind, roles in DEMO_PRINCIPALS:
                made = principals.create(
                    session,
                    PrincipalCreate(name=name, kind=kind, roles=roles),
                    actor=created.admin.id,
                )
                demo.keys[name] = made.api_key
        rng = random.Random(20261125)
        keys = wiring.keys(settings)
        with transaction(engine) as session:
            parsed = csv_import.Parsed(rows=_demo_consents(rng))
            report = csv_import.import_rows(
                session, keys.pseudonym_key, parsed, actor=created.admin.id
            )
            demo.subjects, demo.consents = report.subjects_created, report.imported
            ids = [str(r.consent_id) for r in session.execute(select(ConsentVersion)).scalars()]
            for consent_id in rng.sample(sorted(ids), k=len(ids) // 20):
                service.withdraw(
                    session,
                    consent_id,
                    WithdrawBody(reason="demo: patient changed their mind"),
                    actor=created.admin.id,
                )
                demo.withdrawn += 1
        store = wiring.store(settings)
        with transaction(engine) as session:
            for i in range(DEMO_PATIENTS):
                for data in synthetic.patient_studies(
                    f"DEMO{i:05d}",
                    DEMO_ISSUER,
                    rng,
                    studies=rng.randint(1, 3),
                    per_series=rng.randint(3, 5),
                ):
                    images.ingest(
                        session,
                        store,
                        keys,
                        data,
                        default_issuer=DEMO_ISSUER,
                        actor=created.admin.id,
                    )
                    demo.images += 1
            dataset = datasets.create(
                session,
                datasets.DatasetCreate(
                    name="demo-ct-mr", filter=datasets.DatasetFilter(modalities=["CT", "MR"])
                ),
                actor=created.admin.id,
                vault=wiring.vault(settings, keys),
            )
            demo.dataset_id = dataset.id
        with transaction(engine) as session:
            # A request waiting in the stewards' queue, filed by the demo pipeline.
            ctx = wiring.context(settings, keys)
            activate(session, ctx.policies, actor=None)
            pipeline = principals.find_by_name(session, "pipeline")
            request = access.create(
                session,
                ctx,
                AccessRequestCreate(
                    dataset_id=dataset.id,
                    purpose="ai.training",
                    justification="Demo: train a chest CT triage model for the radiology service.",
                ),
                requester=pipeline.id,
            )
            demo.request_id = request.id
            demo.walkthrough_patient = _patient_in(session, keys.pseudonym_key, request)
            example = subjects.find(session, keys.pseudonym_key, DEMO_ISSUER, "DEMO00001")
            demo.example_subject = example.id if example is not None else None
        with transaction(engine) as session:
            # Sign the demo's history at once, so /v1/log/checkpoint answers from the start.
            checkpoints.create(session, checkpoints.LogTree(), keys, settings.log_origin)
    finally:
        engine.dispose()
    return demo
