"""Demo installation: one principal per role, so a new user can try every route at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.config import Settings
from ledger.db import make_engine, transaction
from ledger.home import init_home
from ledger.keystore import load_keyring
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


@dataclass
class Demo:
    home: str
    keys: dict[str, str] = field(default_factory=dict)


def build_demo(settings: Settings) -> Demo:
    created = init_home(settings)
    demo = Demo(home=created.home, keys={"admin": created.admin.api_key})
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
        with transaction(engine) as session:
            # Sign the demo's history at once, so /v1/log/checkpoint answers from the start.
            keys = load_keyring(settings.keys_dir)
            checkpoints.create(session, checkpoints.LogTree(), keys, settings.log_origin)
    finally:
        engine.dispose()
    return demo
