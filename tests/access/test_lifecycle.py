"""Every lifecycle move is either allowed by the table or refused with Conflict."""

from __future__ import annotations

import pytest

from ledger.access.lifecycle import ALLOWED, Status, transition
from ledger.errors import Conflict


@pytest.mark.parametrize("current", list(Status))
@pytest.mark.parametrize("target", list(Status))
def test_transitions(current: Status, target: Status) -> None:
    if target in ALLOWED[current]:
        assert transition(current, target) is target
    else:
        with pytest.raises(Conflict, match=f"{current} cannot become {target}"):
            transition(current, target)


def test_terminal_states_have_no_exit() -> None:
    for terminal in (Status.rejected, Status.expired, Status.revoked):
        assert ALLOWED[terminal] == frozenset()
