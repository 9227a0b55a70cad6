"""The web console for stewards, registrars and auditors: server-rendered pages over the
same services as the API, with the same role checks (roles: docs/architecture.md §2)."""
