"""The append-only provenance log: every change and decision, hash-linked and Merkle-hashed."""
