"""The population fixture of the decision-path tests, shared by the release tests."""

from tests.access.test_access_api import world  # noqa: F401
