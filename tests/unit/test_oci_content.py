"""Content store: atomic, verified, content-addressed blobs; staging commits all or nothing."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from hypr_engine.errors import CorruptData, InvalidArgument, NotFound
from hypr_engine.oci.content import ContentStore


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def files_in(store: ContentStore) -> list[str]:
    """Everything on disk under the blob dir, temp files included."""
    return sorted(os.listdir(store.blob_dir))


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


@pytest.mark.parametrize(
    "make",
    [
        lambda d, tmp: d,
        lambda d, tmp: bytearray(d),
        lambda d, tmp: io.BytesIO(d),
        lambda d, tmp: iter([d[:3], d[3:]]),
        lambda d, tmp: (tmp.write_bytes(d), tmp)[1],
    ],
    ids=["bytes", "bytearray", "stream", "iterable", "path"],
)
def test_ingest_sources(store: ContentStore, tmp_path: Path, make) -> None:  # noqa: ANN001
    data = b"hello world" * 1000
    desc = store.ingest(make(data, tmp_path / "src"), media_type="x/y")
    assert desc.digest == sha(data) and desc.size == len(data) and desc.media_type == "x/y"
    assert store.has(desc.digest)
    assert store.path(desc.digest) == store.root / "sha256" / desc.digest[7:]
    assert store.size(desc.digest) == len(data)
    with store.open(desc.digest) as f:
        assert f.read() == data
    assert store.read(desc.digest) == data
    assert list(store.digests()) == [desc.digest]
    assert files_in(store) == [desc.digest[7:]]  # no temp file left


def test_expected_digest_and_size(store: ContentStore) -> None:
    data = b"abc"
    assert store.ingest(data, sha(data), 3).digest == sha(data)
    # Present already: a stream is not even read.
    stream = io.BytesIO(b"never read")
    assert store.ingest(stream, sha(data), 3).size == 3
    assert stream.tell() == 0


@pytest.mark.parametrize(
    "data,expected_digest,expected_size,message",
    [
        (b"abc", sha(b"abd"), None, "digest mismatch"),
        (b"abc", None, 4, "truncated"),
        (b"abcde", None, 4, "larger than"),
        (b"abc", sha(b"abc"), 2, "larger than"),
    ],
)
def test_mismatch_leaves_nothing(store: ContentStore, data, expected_digest, expected_size, message) -> None:  # noqa: ANN001
    with pytest.raises(CorruptData) as info:
        store.ingest(io.BytesIO(data), expected_digest, expected_size)
    assert message in info.value.message
    assert files_in(store) == []


def test_source_error_leaves_nothing(store: ContentStore) -> None:
    def chunks():  # noqa: ANN202
        yield b"partial"
        raise OSError("connection reset")

    with pytest.raises(OSError):
        store.ingest(chunks())
    assert files_in(store) == []


def test_bad_digests_rejected(store: ContentStore) -> None:
    for bad in ["sha256:../../etc/passwd", "sha256:ABC", "md5:" + "a" * 32, "nonsense"]:
        with pytest.raises(InvalidArgument):
            store.has(bad)
    with pytest.raises(InvalidArgument):
        store.ingest(b"x", "sha512:" + "a" * 128)  # valid digest, but the store keeps sha256 only


def test_missing_and_delete(store: ContentStore) -> None:
    d = sha(b"gone")
    for call in (store.path, store.open, store.size, store.read):
        with pytest.raises(NotFound):
            call(d)
    desc = store.ingest(b"gone")
    assert store.delete(desc.digest) is True
    assert store.delete(desc.digest) is False
    assert not store.has(desc.digest)


def test_concurrent_ingest_same_digest(store: ContentStore) -> None:
    data = os.urandom(1 << 20)
    results, errors = [], []
    barrier = threading.Barrier(8)

    def worker() -> None:
        try:
            w = store.writer(expected_digest=sha(data))
            barrier.wait()
            for i in range(0, len(data), 65536):
                w.write(data[i: i + 65536])
            results.append(w.commit())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {r.digest for r in results} == {sha(data)}
    assert files_in(store) == [sha(data)[7:]]
    assert store.read(sha(data)) == data


def test_staging_commit_publishes_only_wanted(store: ContentStore) -> None:
    existing = store.ingest(b"existing")
    with store.stage() as st:
        a = st.ingest(b"a")
        b = st.ingest(io.BytesIO(b"b"))
        again = st.ingest(b"existing")  # already stored: nothing staged
        assert st.has(a.digest) and st.read(a.digest) == b"a"
        assert not store.has(a.digest)  # invisible until commit
        assert again.digest == existing.digest
        created = st.commit(only=[a.digest, existing.digest])
    assert created == [a.digest]
    assert store.has(a.digest) and not store.has(b.digest)
    assert files_in(store) == sorted([a.digest[7:], existing.digest[7:]])


def test_staging_abort_on_error(store: ContentStore) -> None:
    before = files_in(store)
    with pytest.raises(RuntimeError), store.stage() as st:
        st.ingest(b"one")
        st.ingest(b"two")
        raise RuntimeError("archive turned out corrupt")
    assert files_in(store) == before


def test_stale_temp_files_swept(store: ContentStore) -> None:
    w = store.writer()
    w.write(b"crashed writer")
    old = [p for p in store.blob_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(old) == 1 and list(store.digests()) == []
    os.utime(old[0], (0, 0))
    assert store.remove_stale_temp(older_than=60) == 1
    assert files_in(store) == []
    w.abort()  # idempotent even though the file is gone
