"""Who asks for an inference decision, as the decision weighs it (``ledger.access.authorize``)."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.principals.keys import Caller


@dataclass(frozen=True)
class Asker:
    """Who asks and what the call states, as the decision weighs it: the pipeline's id,
    organisation type (NPU), region (GS) and institution (IS), recorded on its principal,
    and whether the call is for a patient's clinical care (CC opens ``ai.inference``)."""

    pipeline_id: str | None = None
    organisation_type: str = "unknown"
    region: str | None = None
    institution: str | None = None
    clinical_care: bool = False

    @classmethod
    def of(cls, caller: Caller, *, clinical_care: bool = False) -> Asker:
        return cls(
            caller.id, caller.organisation_type, caller.region, caller.institution, clinical_care
        )


NOBODY = Asker()
