"""WADO-RS answers streamed from the event loop: a multipart body of released files.

Starlette streams a plain iterator by running each ``next`` in its thread pool: one
thread hand-off per step, and while a worker thread de-identifies a file the event
loop, waking to send, queues for the GIL behind it. A small file's splice (decrypt, the
header de-identified and written, the original pixel data after it: about a millisecond
for a CT slice) is cheaper done in the loop itself, between two sends; measured on the
DICOMweb bench, that saved a tenth of the server's CPU per instance. Anything that may
take long still goes to a worker thread: a file over ``INLINE_BYTES`` (decrypting it
alone would hold the loop up), and a file that needs the whole-file path, which may run
OCR (``Job.quick`` leaves it ``LATER``). So the loop is never held up for more than one
small file's splice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from ledger.access.dicomweb import LATER, Retrieved
from ledger.images.multipart import Framer, Piece

INLINE_BYTES = 1 << 20


async def multipart_files(got: Retrieved, boundary: str) -> AsyncIterator[Piece]:
    """The multipart/related body of ``got``'s files; those withheld are left out.
    However the stream ends (done, failed, or abandoned by a client gone away), ``got``
    is closed once no thread renders one of its files any more: the download slot is
    given back (in a worker thread when the stream is done: on PostgreSQL that is a
    query, not for the event loop)."""
    framer = Framer(boundary)
    try:
        for job in got.jobs:
            pieces = job.quick() if 0 < job.size <= INLINE_BYTES else LATER
            if pieces is LATER:
                pieces = await run_in_threadpool(job.render)
            if pieces is not None:
                for piece in framer.add(pieces):
                    yield piece
        await run_in_threadpool(got.close)
        yield framer.end()
    finally:
        got.close()  # does nothing if closed above
