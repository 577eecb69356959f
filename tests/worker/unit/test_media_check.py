"""What a received file must be to be kept: its declared size, hash and kind (pure checks),
and the store on the bot's volume (quota, retention, the free-space floor, ids)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from botworker.adapters.media_store import MediaStore, StoredMedia
from botworker.core.media_check import refusal, sniff

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 50
OGG = b"OggS" + b"\x00" * 100
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100
M4A = b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 100
PDF = b"%PDF-1.7\n" + b"\x00" * 100
ELF = b"\x7fELF\x02\x01" + b"\x00" * 100
ZIP = b"PK\x03\x04" + b"\x00" * 100


def check(data: bytes, kind: str, mime: str | None = None, *, size: int | None = -1,
          sha: str | None = "", max_bytes: int = 1 << 20) -> str | None:
    return refusal(data, message_type=kind, mimetype=mime,
                   declared_size=len(data) if size == -1 else size,
                   declared_sha256=hashlib.sha256(data).hexdigest() if sha == "" else sha,
                   max_bytes=max_bytes)


def test_sniffing_knows_the_formats_whatsapp_carries() -> None:
    found = [sniff(x) for x in (JPEG, PNG, WEBP, OGG, MP4, M4A, PDF, ELF, ZIP, b"plain text")]
    assert [f[0] if f is not None else None for f in found] == [
        "image", "image", "image", "audio", "video", "audio", "document", "executable",
        "archive", None]


@pytest.mark.parametrize(("data", "kind", "mime"), [
    (JPEG, "image", "image/jpeg"), (PNG, "image", "image/png"), (WEBP, "sticker", "image/webp"),
    (OGG, "voice", "audio/ogg; codecs=opus"), (MP4, "video", "video/mp4"),
    (M4A, "audio", "audio/mp4"), (PDF, "document", "application/pdf"),
    (ZIP, "document", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (b"name,qty\n", "document", "text/csv"), (ELF, "document", "application/octet-stream"),
])
def test_honest_files_are_kept(data: bytes, kind: str, mime: str) -> None:
    assert check(data, kind, mime) is None


@pytest.mark.parametrize(("data", "kind", "mime", "why"), [
    (PDF, "image", "image/jpeg", "type_mismatch"),  # a "photo" that is a PDF
    (b"hello", "image", "image/jpeg", "type_mismatch"),  # a photo must look like one
    (ELF, "voice", "audio/ogg", "type_mismatch"),  # a "voice note" that is a program
    (ELF, "document", "application/pdf", "type_mismatch"),  # a "PDF" that is a program
    (JPEG, "document", "application/pdf", "type_mismatch"),
    (ELF, "document", "text/plain", "type_mismatch"),
])
def test_files_that_are_not_what_they_say_are_refused(data: bytes, kind: str, mime: str,
                                                      why: str) -> None:
    assert check(data, kind, mime) == why


def test_size_hash_and_limit() -> None:
    assert check(JPEG, "image", "image/jpeg", size=len(JPEG) + 1) == "truncated"
    assert check(JPEG, "image", "image/jpeg", size=len(JPEG) - 1) == "size_mismatch"
    assert check(JPEG, "image", "image/jpeg", sha="00" * 32) == "sha256_mismatch"
    assert check(JPEG, "image", "image/jpeg", max_bytes=10) == "too_large"
    assert check(JPEG, "image", "image/jpeg", size=None, sha=None) is None  # nothing declared


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def put(store: MediaStore, data: bytes, *, quota: int = 1000, retention: float = 3600.0
        ) -> StoredMedia | str:
    return store.put(data, mimetype="application/pdf", file_name="f.pdf",
                     sha256=hashlib.sha256(data).hexdigest(), chat="c", message_id="m",
                     quota_bytes=quota, retention_s=retention)


def test_a_restarted_store_finds_the_files_on_the_volume(tmp_path: Path) -> None:
    first = MediaStore(tmp_path / "media", reserve_bytes=0)
    kept = put(first, b"a" * 100)
    assert isinstance(kept, StoredMedia)
    again = MediaStore(tmp_path / "media", reserve_bytes=0)
    assert again.usage().files == 1 and again.usage().bytes == 100
    found = again.get(kept.id)
    assert found is not None and found[1] == b"a" * 100


def test_the_store_keeps_evicts_oldest_first_and_expires(tmp_path: Path) -> None:
    clock = Clock()
    store = MediaStore(tmp_path / "media", reserve_bytes=0, clock=clock)
    first = put(store, b"a" * 400)
    clock.now += 1
    second = put(store, b"b" * 400)
    assert isinstance(first, StoredMedia) and isinstance(second, StoredMedia)
    clock.now += 1
    third = put(store, b"c" * 400)  # 1200 > 1000: the oldest goes
    assert isinstance(third, StoredMedia)
    assert store.get(first.id) is None
    found = store.get(second.id)
    assert found is not None and found[1] == b"b" * 400
    assert store.usage().bytes == 800 and store.usage().files == 2
    assert put(store, b"x" * 1001) == "too_large"  # larger than the whole quota
    clock.now += 7200
    assert store.expire(3600.0) == 2
    assert store.usage().files == 0


def test_the_store_refuses_rather_than_fill_the_volume(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media", reserve_bytes=1 << 20,
                       free_bytes=lambda _p: (1 << 20) + 100)
    assert put(store, b"a" * 50) is not None and store.usage().full is False
    assert put(store, b"a" * 200) == "no_space"
    assert store.usage().full and store.usage().reason == "VolumeFull"
    assert store.usage().files == 1  # nothing was written for the refused file
    assert not list((tmp_path / "media").glob(".*.tmp"))


def test_ids_are_random_and_checked(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media", reserve_bytes=0)
    a, b = put(store, b"same"), put(store, b"same")
    assert isinstance(a, StoredMedia) and isinstance(b, StoredMedia) and a.id != b.id
    for bad in ("../secret", "", "x" * 22 + "/", a.id + ".json", "a" * 200):
        assert store.get(bad) is None
    (tmp_path / "media" / f"{a.id}.json").write_text("{not json")
    assert store.get(a.id) is None
    # After a restart (a new store reads the volume), the damaged one is not counted.
    assert MediaStore(tmp_path / "media", reserve_bytes=0).usage().files == 1


@pytest.mark.parametrize("kind", ["image", "sticker", "video", "audio", "voice", "document"])
def test_the_sample_files_of_the_test_support_pass_the_checks(kind: str) -> None:
    from tests.support import wamessages as wa

    data, mime = wa.sample(kind, 4096)
    assert len(data) == 4096
    assert check(data, kind, mime) is None
    ev, got = wa.media_event(kind, 4096)
    assert got == data and wa.direct_path(ev).startswith("/v/")
