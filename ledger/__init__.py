"""Consent and provenance ledger for medical-imaging AI."""

__version__ = "0.1.0"
