"""The decision-path population, reused by the hardening tests."""

from tests.access.test_access_api import world  # noqa: F401
