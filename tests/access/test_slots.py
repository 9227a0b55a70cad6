"""Download slots: per process on SQLite, shared by every server on PostgreSQL, and given
back by PostgreSQL itself when a server dies holding one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import Engine

from ledger.access.slots import SharedSlots, Slots, for_engine
from ledger.errors import TooManyRequests

HOLDER = """
import sys, time
from sqlalchemy import create_engine
from ledger.access.slots import SharedSlots
slots = SharedSlots(1, create_engine(sys.argv[1]))
slots.take(sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


def test_two_servers_share_the_limit_on_postgres(engine: Engine, backend: str) -> None:
    one, two = for_engine(2, engine), for_engine(2, engine)  # as two server processes would
    one.take("g")
    two.take("g")
    if backend == "sqlite":
        assert type(one) is Slots  # one server per SQLite database: counted in the process
        one.take("g")
        with pytest.raises(TooManyRequests):
            one.take("g")
        return
    assert isinstance(one, SharedSlots)
    with pytest.raises(TooManyRequests):
        one.take("g")
    with pytest.raises(TooManyRequests):
        two.take("g")
    two.take("other")  # another grant has slots of its own
    two.give("g")
    one.take("g")
    assert one.held("g") == 2
    for slots in (one, two):
        for grant in ("g", "g", "other"):
            slots.give(grant)
    assert one.held("g") == two.held("g") == 0
    one.give("g")  # giving back more than was taken is harmless


def test_a_killed_server_gives_its_slot_back(engine: Engine, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("slots are shared through PostgreSQL advisory locks")
    url = engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, "killed"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        slots = SharedSlots(1, engine)
        with pytest.raises(TooManyRequests):
            slots.take("killed")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                slots.take("killed")
                break
            except TooManyRequests:
                assert time.monotonic() < deadline, "the dead server's slot was never freed"
                time.sleep(0.1)
        slots.give("killed")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
