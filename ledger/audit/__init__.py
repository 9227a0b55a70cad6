"""Auditor queries over the log and the domains: lineage, releases after withdrawal, PROV."""
