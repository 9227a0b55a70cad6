"""``multipart/related`` bodies as DICOMweb uses them (RFC 2387, PS3.18 §8.6.1.2).

Pure: splits a received body into its parts and frames parts for a streamed answer. Only
what STOW-RS and WADO-RS need: one boundary, each part its own headers and bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ledger.errors import InvalidInput, UnsupportedMediaType

DICOM = "application/dicom"


@dataclass(frozen=True)
class Part:
    content_type: str  # the part's media type, lower case, parameters dropped
    data: bytes


def parameters(content_type: str) -> tuple[str, dict[str, str]]:
    """The media type (lower case) and its parameters (names lower case, quotes removed)."""
    media, *rest = content_type.split(";")
    params: dict[str, str] = {}
    for item in rest:
        name, eq, value = item.partition("=")
        if eq:
            params[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def boundary_of(content_type: str, *, part_type: str = DICOM) -> str:
    """The boundary of a ``multipart/related; type="application/dicom"`` body, or the
    error that says what the header lacks."""
    media, params = parameters(content_type)
    if media != "multipart/related":
        raise UnsupportedMediaType(f'send multipart/related; type="{part_type}"')
    kind = params.get("type", part_type).lower()
    if kind != part_type:
        raise UnsupportedMediaType(f'only type="{part_type}" parts are accepted, not {kind}')
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise InvalidInput("the multipart/related content type names no boundary")
    return boundary


def split(body: bytes, boundary: str, *, default_type: str = DICOM) -> list[Part]:
    """The parts of ``body``; InvalidInput if it is not framed by ``boundary``."""
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise InvalidInput("the body holds no part delimited by its boundary")
    parts: list[Part] = []
    pos = start + len(delimiter)
    while True:
        if body[pos : pos + 2] == b"--":
            return parts  # the close delimiter
        end = body.find(b"\r\n" + delimiter, pos)
        if end < 0:
            raise InvalidInput("the multipart body is truncated (no close delimiter)")
        raw = body[pos:end]
        if raw.startswith(b"\r\n"):
            raw = raw[2:]
        head, sep, data = raw.partition(b"\r\n\r\n")
        if not sep:
            if raw.startswith(b"\r\n"):  # a part with no headers
                head, data = b"", raw[2:]
            else:
                raise InvalidInput("a multipart part has no blank line after its headers")
        content_type = default_type
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-type":
                content_type = parameters(value.decode("latin-1"))[0]
        parts.append(Part(content_type, data))
        pos = end + 2 + len(delimiter)


def new_boundary() -> str:
    return "ledger-" + secrets.token_hex(16)


def content_type(boundary: str, part_type: str = DICOM) -> str:
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def frame(parts: Iterable[bytes], boundary: str, part_type: str = DICOM) -> Iterator[bytes]:
    """Yield a multipart/related body of ``parts``, one part at a time (streamed)."""
    head = f"--{boundary}\r\nContent-Type: {part_type}\r\n".encode()
    for data in parts:
        yield head + f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def frame_pieces(
    parts: Iterable[Sequence[bytes | memoryview]],
    boundary: str,
    part_type: str = DICOM,
    *,
    chunk: int = 1 << 21,
) -> Iterator[bytes]:
    """As ``frame``, for parts given as pieces to send one after the other (a header and
    a view of the original pixel data, say). Parts are joined, with their framing, into
    buffers of about ``chunk`` bytes: one copy each, and a server that runs this iterator
    in a thread pool hands over once per buffer rather than once per part."""
    head = f"--{boundary}\r\nContent-Type: {part_type}\r\n".encode()
    pending: list[bytes | memoryview] = []
    size = 0
    for pieces in parts:
        length = sum(len(p) for p in pieces)
        pending += (head, f"Content-Length: {length}\r\n\r\n".encode(), *pieces, b"\r\n")
        size += length
        if size >= chunk:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(f"--{boundary}--\r\n".encode())
    yield b"".join(pending)
