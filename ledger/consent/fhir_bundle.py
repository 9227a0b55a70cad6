"""FHIR Bundles: a ``transaction`` of Patients and Consents in, and the Bundles the ledger
answers (``transaction-response``, ``searchset``, ``history``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.consent.fhir_patient import Resolver, error

PATIENT_METHODS = ("POST", "PUT")
CONSENT_METHODS = ("POST",)


@dataclass(frozen=True)
class Entry:
    index: int
    resource: dict[str, Any]
    full_url: str | None
    if_none_exist: str | None

    @property
    def kind(self) -> str:
        return str(self.resource.get("resourceType"))

    @property
    def at(self) -> str:
        return f"entry[{self.index}]"


def entries(bundle: Any) -> list[Entry]:
    """The entries of a transaction Bundle, checked: Patients (POST or PUT) and Consents
    (POST, optionally with ``ifNoneExist``), nothing else."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise error("resourceType", "send a Bundle of type transaction")
    if bundle.get("type") != "transaction":
        raise error(
            "type", f"{bundle.get('type')!r}: only a transaction Bundle (all or nothing) is taken"
        )
    raw = bundle.get("entry")
    if not isinstance(raw, list) or not raw:
        raise error("entry", "a transaction needs at least one entry")
    out = []
    for i, item in enumerate(raw):
        at = f"entry[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("resource"), dict):
            raise error(f"{at}.resource", "each entry carries a resource")
        resource = item["resource"]
        kind = resource.get("resourceType")
        request: dict[str, Any] = item["request"] if isinstance(item.get("request"), dict) else {}
        method = str(request.get("method") or "").upper()
        url = str(request.get("url") or "")
        allowed = {"Patient": PATIENT_METHODS, "Consent": CONSENT_METHODS}.get(str(kind))
        if allowed is None:
            raise error(f"{at}.resource", f"{kind!r}: a transaction carries Patients and Consents")
        if method not in allowed or url.split("?")[0].rstrip("/") != kind:
            raise error(
                f"{at}.request",
                f"send {' or '.join(allowed)} {kind} (got {method or '?'} {url or '?'})",
            )
        full_url = item.get("fullUrl")
        out.append(
            Entry(
                i,
                resource,
                str(full_url) if full_url else None,
                str(request["ifNoneExist"]) if request.get("ifNoneExist") else None,
            )
        )
    return out


def resolver(items: list[Entry]) -> Resolver:
    """References to the Bundle's Patients: by ``fullUrl`` (``urn:uuid:...`` or a URL) and,
    for a Patient with an id, ``Patient/<id>``."""
    names: dict[str, Entry] = {}
    for entry in items:
        if entry.kind != "Patient":
            continue
        aliases = _aliases(entry)
        for alias in aliases:
            names[alias] = entry

    def resolve(reference: str) -> tuple[dict[str, Any], set[str]] | None:
        entry = names.get(reference)
        if entry is None and "/Patient/" in reference:
            entry = names.get("Patient/" + reference.rsplit("/Patient/", 1)[1])
        return (entry.resource, _aliases(entry)) if entry is not None else None

    return resolve


def _aliases(entry: Entry) -> set[str]:
    out = set()
    if entry.full_url:
        out.add(entry.full_url)
        if "/Patient/" in entry.full_url:
            out.add("Patient/" + entry.full_url.rsplit("/Patient/", 1)[1])
    if entry.resource.get("id"):
        out.add(f"Patient/{entry.resource['id']}")
    return out


def transaction_response(answers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}


def searchset(base: str, self_url: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [
            {
                "fullUrl": f"{base}/Consent/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def history(base: str, versions: list[tuple[dict[str, Any], bool]]) -> dict[str, Any]:
    """``versions``: (resource, created), newest first."""
    return {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(versions),
        "entry": [
            {
                "fullUrl": f"{base}/Consent/{r['id']}",
                "resource": r,
                "request": {
                    "method": "POST" if created else "PUT",
                    "url": "Consent" if created else f"Consent/{r['id']}",
                },
                "response": {
                    "status": "201 Created" if created else "200 OK",
                    "etag": f'W/"{r["meta"]["versionId"]}"',
                    "lastModified": r["meta"]["lastUpdated"],
                },
            }
            for r, created in versions
        ],
    }
