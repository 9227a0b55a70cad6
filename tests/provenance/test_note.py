"""C2SP signed notes: the Go reference vector, round trips and every way a note can lie."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.provenance.note import (
    Checkpoint,
    NoteError,
    Verifier,
    open_note,
    parse,
    sign,
    sign_text,
    verify_text,
)

# golang.org/x/mod/sumdb/note reference vector (also quoted in the C2SP spec's examples).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_go_reference_vector_verifies_and_is_reproduced_byte_for_byte() -> None:
    verifier = Verifier.decode(GO_VKEY)
    assert verifier.encode() == GO_VKEY
    assert verify_text(GO_NOTE, [verifier]) == (GO_TEXT, ["PeterNeumann"])
    seed = base64.b64decode(GO_SKEY_SEED)[1:]
    private = Ed25519PrivateKey.from_private_bytes(seed)
    assert sign_text(GO_TEXT, "PeterNeumann", private) == GO_NOTE


def test_altered_text_is_refused() -> None:
    verifier = Verifier.decode(GO_VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        verify_text(GO_NOTE.replace("answer", "Answer"), [verifier])


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _verifier(name: str, key: Ed25519PrivateKey) -> Verifier:
    return Verifier(name, key.public_key().public_bytes_raw())


def test_checkpoint_round_trip(key: Ed25519PrivateKey) -> None:
    cp = Checkpoint("example.org/log", 42, bytes(range(32)))
    note = sign(cp, "example.org/log", key)
    assert note.startswith("example.org/log\n42\n")
    assert open_note(note, [_verifier("example.org/log", key)]) == (cp, ["example.org/log"])


def test_untrusted_or_renamed_key_is_refused(key: Ed25519PrivateKey) -> None:
    note = sign(Checkpoint("o", 1, b"\x01" * 32), "o", key)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(NoteError, match="no signature from a trusted key"):
        open_note(note, [_verifier("o", other)])
    with pytest.raises(NoteError, match="no signature from a trusted key"):
        open_note(note, [_verifier("other-name", key)])


def test_forged_size_is_refused(key: Ed25519PrivateKey) -> None:
    note = sign(Checkpoint("o", 10, b"\x01" * 32), "o", key)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note.replace("\n10\n", "\n11\n", 1), [_verifier("o", key)])


def test_extra_cosignature_from_unknown_key_is_ignored(key: Ed25519PrivateKey) -> None:
    note = sign(Checkpoint("o", 3, b"\x02" * 32), "o", key)
    witness = Ed25519PrivateKey.generate()
    cosigned = (
        note + sign_text(Checkpoint("o", 3, b"\x02" * 32).body(), "w", witness).split("\n\n")[1]
    )
    assert open_note(cosigned, [_verifier("o", key)])[1] == ["o"]
    assert open_note(cosigned, [_verifier("o", key), _verifier("w", witness)])[1] == ["o", "w"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o\n1\n",
        "o\n1\nAAAA\n\n",
        "o\nx\n" + base64.b64encode(b"\x00" * 32).decode() + "\n\n\u2014 o AAAA\n",
        "o\n01\n" + base64.b64encode(b"\x00" * 32).decode() + "\n\n\u2014 o AAAA\n",
        "o\n1\n" + base64.b64encode(b"\x00" * 31).decode() + "\n\n\u2014 o AAAA\n",
        "o\n1\n" + base64.b64encode(b"\x00" * 32).decode() + "\n\n- o AAAA\n",
    ],
)
def test_malformed_notes_raise_note_error(text: str, key: Ed25519PrivateKey) -> None:
    with pytest.raises(NoteError):
        open_note(text, [_verifier("o", key)])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a3+!!!",
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        Verifier.decode(vkey)


def test_parse_reads_claims_without_keys(key: Ed25519PrivateKey) -> None:
    assert parse(sign(Checkpoint("o", 0, b"\x03" * 32), "o", key)).size == 0


def test_verifier_key_whose_base64_contains_a_plus() -> None:
    # transparency-dev/formats note tests: the key material itself contains '+'.
    plus_key = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
    assert Verifier.decode(plus_key).encode() == plus_key
