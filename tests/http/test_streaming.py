"""The WADO-RS body streamed from the event loop (``ledger.http.streaming``): the same
bytes ``multipart.frame`` gives for the files released, withheld ones left out, large
files and those ``quick`` leaves ``LATER`` rendered in a thread, and the jobs closed (the
download slot given back) however the stream ends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from ledger.access.dicomweb import LATER, Retrieved
from ledger.http import streaming
from ledger.images import multipart

BOUNDARY = "b0und"


class FakeJob:
    """A job as ``dicomweb.retrieve`` makes them, recording where it was rendered."""

    def __init__(self, size: int, pieces: Any, *, quick: bool = True) -> None:
        self.size, self.pieces, self.can_quick = size, pieces, quick
        self.threads: list[str] = []

    def quick(self) -> Any:
        self.threads.append("quick@" + _where())
        return self.pieces if self.can_quick else LATER

    def render(self) -> Any:
        self.threads.append("render@" + _where())
        return self.pieces


def _where() -> str:
    """The event loop (``asyncio.run`` here runs it in the main thread) or a worker."""
    return "loop" if threading.current_thread() is threading.main_thread() else "worker"


def _got(items: list[FakeJob], closed: list[str]) -> Retrieved:
    return Retrieved(items, lambda: closed.append(_where()), len(items), 0)  # type: ignore[arg-type]


async def _collect(body: AsyncIterator[multipart.Piece], stop_after: int | None = None) -> bytes:
    out = []
    async for piece in body:
        out.append(bytes(piece))
        if stop_after is not None and len(out) >= stop_after:
            await body.aclose()  # type: ignore[attr-defined]
            break
    return b"".join(out)


def test_the_body_is_what_frame_gives_for_the_files_released() -> None:
    big = bytes(range(256)) * 1024  # past Framer's "small": sent as it is
    files = [
        FakeJob(1000, (b"head-1", memoryview(big))),
        FakeJob(1000, None),  # withheld
        FakeJob(streaming.INLINE_BYTES + 1, (b"head-3", memoryview(b"tiny"))),  # large
        FakeJob(1000, (b"head-4", memoryview(b"")), quick=False),  # needs the whole path
        FakeJob(0, (b"head-5", memoryview(b"px"))),  # size unknown
    ]
    closed: list[str] = []
    body = asyncio.run(_collect(streaming.multipart_files(_got(files, closed), BOUNDARY)))
    expected = b"".join(
        multipart.frame([b"head-1" + big, b"head-3tiny", b"head-4", b"head-5px"], BOUNDARY)
    )
    assert body == expected
    assert closed == ["worker", "loop"]  # given back in a thread, then a no-op (once)
    parts = multipart.split(body, BOUNDARY)
    assert [p.data[:6] for p in parts] == [b"head-1", b"head-3", b"head-4", b"head-5"]
    assert files[0].threads == ["quick@loop"]  # small: in the event loop
    assert files[1].threads == ["quick@loop"]
    assert files[2].threads == ["render@worker"]  # large
    assert files[3].threads == ["quick@loop", "render@worker"]  # the whole-file path
    assert files[4].threads == ["render@worker"]  # size unknown


def test_an_abandoned_stream_closes_its_jobs() -> None:
    big = b"x" * (1 << 17)
    files = [FakeJob(1000, (b"h", memoryview(big))) for _ in range(5)]
    closed: list[str] = []
    asyncio.run(_collect(streaming.multipart_files(_got(files, closed), BOUNDARY), 2))
    assert closed == ["loop"]
    assert sum(1 for f in files if f.threads) == 1  # nothing rendered past the stop


def test_small_parts_are_joined_into_few_sends() -> None:
    framer = multipart.Framer(BOUNDARY)
    sends = [s for i in range(100) for s in framer.add((b"h%d" % i, memoryview(b"p" * 100)))]
    sends.append(framer.end())
    assert len(sends) == 1
    expected = multipart.frame([b"h%d" % i + b"p" * 100 for i in range(100)], BOUNDARY)
    assert sends[0] == b"".join(expected)
