"""The per-run digest cache (teeform.fsutil.hash_cache) and its use by the offline preview: N targets
sharing one EIF hash it once. Digests are checked against hashlib over the file's bytes."""

from __future__ import annotations

import hashlib
import os

import pytest
from pulumi_support import REPO, config_values, nitro_target, write_fake_eif_manifest

from teeform import fsutil
from teeform.errors import TeeformError
from teeform.fsutil import hash_cache, hash_file

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def rewrite_keeping_stat(path, data):
    """Overwrite ``path`` in place with same-size ``data`` and put its mtime back (same cache key)."""
    st = os.stat(path)
    assert len(data) == st.st_size
    with open(path, "r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_digests_match_hashlib(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(os.urandom(3 * fsutil.CHUNK + 17))
    with hash_cache():
        got = hash_file(f, ("sha256", "sha384"))
    assert got == {"sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "sha384": hashlib.sha384(f.read_bytes()).hexdigest()}


def test_cache_hit_is_keyed_by_identity_size_and_mtime(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"A" * 100)
    old = hashlib.sha384(b"A" * 100).hexdigest()
    new = hashlib.sha384(b"B" * 100).hexdigest()
    with hash_cache():
        assert hash_file(f, ("sha384",))["sha384"] == old
        rewrite_keeping_stat(f, b"B" * 100)
        assert hash_file(f, ("sha384",))["sha384"] == old  # same (realpath, dev, ino, size, mtime): not read again
        assert hash_file(f, ("sha256",))["sha256"] == hashlib.sha256(b"B" * 100).hexdigest()  # another algorithm is read
        os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 1))
        assert hash_file(f, ("sha384",))["sha384"] == new  # mtime changed: hashed again
        g = tmp_path / "g.bin"
        g.write_bytes(b"C" * 100)
        os.replace(g, f)  # new inode at the same path
        assert hash_file(f, ("sha384",))["sha384"] == hashlib.sha384(b"C" * 100).hexdigest()
    rewrite_keeping_stat(f, b"D" * 100)
    assert hash_file(f, ("sha384",))["sha384"] == hashlib.sha384(b"D" * 100).hexdigest()  # no cache outside the block


def test_nested_blocks_share_and_the_outer_one_drops_the_cache(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"A" * 10)
    with hash_cache():
        with hash_cache():
            hash_file(f)
        rewrite_keeping_stat(f, b"B" * 10)
        assert hash_file(f)["sha256"] == hashlib.sha256(b"A" * 10).hexdigest()
    assert fsutil._HASH_CACHE is None
    assert hash_file(f)["sha256"] == hashlib.sha256(b"B" * 10).hexdigest()


def test_preview_hashes_a_shared_eif_once(tmp_path, monkeypatch):
    from teeform.preview import run_program

    img = write_fake_eif_manifest(tmp_path / "build")
    targets = [nitro_target([img.manifest_path], name=f"agent{i}") for i in range(3)]
    reads: list[str] = []
    real_new = hashlib.new

    def counting_new(name, *a, **kw):
        reads.append(name)
        return real_new(name, *a, **kw)

    monkeypatch.setattr(fsutil.hashlib, "new", counting_new)
    mocks, _ = run_program(REPO, "dev", config_values(targets))
    assert sum(r.typ == "aws:kms/key:Key" for r in mocks.resources) == 3  # three targets were built
    assert reads.count("sha256") == 1 and "sha384" not in reads  # the EIF is checked by its SHA-256 only


def test_a_call_during_a_prefetch_waits_for_that_pass(tmp_path, monkeypatch):
    """hash_file of a file another thread is hashing (prefetch_hash) waits and uses that pass: one
    read of the file, the right digest. A pass that lacks an algorithm does not satisfy the call."""
    import threading

    f = tmp_path / "a.bin"
    f.write_bytes(os.urandom(2 * fsutil.CHUNK + 5))
    gate, started = threading.Event(), threading.Event()
    passes: list[str] = []
    real_new = hashlib.new

    def slow_new(name, *a, **kw):
        passes.append(name)
        if threading.current_thread().name == "teeform-prefetch-hash":
            started.set()
            assert gate.wait(10)  # hold the prefetch pass until the main thread is waiting for it
        return real_new(name, *a, **kw)

    monkeypatch.setattr(fsutil.hashlib, "new", slow_new)
    with hash_cache():
        assert fsutil.prefetch_hash(f, ("sha256",))
        assert started.wait(10)
        threading.Timer(0.2, gate.set).start()
        assert hash_file(f, ("sha256",)) == {"sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
        assert passes == ["sha256"]  # the main thread did not hash the file itself
        assert hash_file(f, ("sha384",)) == {"sha384": hashlib.sha384(f.read_bytes()).hexdigest()}
        assert passes == ["sha256", "sha384"]
    assert not fsutil.prefetch_hash(f)  # outside a block: nothing to prefetch into


def test_a_failed_prefetch_leaves_the_error_to_the_caller(tmp_path):
    with hash_cache():
        assert fsutil.prefetch_hash(tmp_path / "missing.eif")
        with pytest.raises(TeeformError, match="cannot read"):
            hash_file(tmp_path / "missing.eif")


def test_preview_prefetches_the_deployed_eif_once(tmp_path, monkeypatch):
    """run_preview asks for the deployed EIF's SHA-256 on a thread before the program runs
    (prefetch_hash with the EIF next to the manifest); whichever of that thread and the program's
    check starts first hashes the file, the other uses its pass: one SHA-256 pass for three
    targets sharing the EIF. (Which thread wins depends on scheduling; the waiting itself is
    test_a_call_during_a_prefetch_waits_for_that_pass.)"""
    import yaml

    from teeform.preview import run_preview

    img = write_fake_eif_manifest(tmp_path / "build")
    targets = [nitro_target([img.manifest_path], name=f"agent{i}") for i in range(3)]
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(yaml.safe_dump({"config": config_values(targets)}))
    passes: list[str] = []
    asked: list[tuple[str, tuple[str, ...]]] = []
    real_new, real_prefetch = hashlib.new, fsutil.prefetch_hash

    def counting_new(name, *a, **kw):
        passes.append(name)
        return real_new(name, *a, **kw)

    def spy(path, algorithms=("sha256",)):
        asked.append((str(path), tuple(algorithms)))
        return real_prefetch(path, algorithms)

    monkeypatch.setattr(fsutil.hashlib, "new", counting_new)
    monkeypatch.setattr(fsutil, "prefetch_hash", spy)
    result = run_preview(REPO, "dev", stack_file=stack)
    assert sum(r.type == "aws:kms/key:Key" for r in result.resources) == 3
    assert asked == [(str(img.eif_path), ("sha256",))]
    assert passes == ["sha256"]
