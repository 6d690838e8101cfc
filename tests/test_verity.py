"""dm-verity hash trees (image_builder.formats.verity) against `veritysetup` 2.6.1, run live, and published vectors."""

from __future__ import annotations

import hashlib
import os
import re
import uuid as uuidlib
from pathlib import Path

import pytest
from conftest import require_tool

from image_builder.formats import verity
from image_builder.formats.verity import VerityParams, build_hash_tree, verify_hash_tree
from teeform.errors import TeeformError
from teeform.run import run

SALT = bytes(range(32))
UUID = "12345678-1234-1234-1234-123456789abc"


def _pattern_file(path: Path, size: int, mul: int = 1) -> Path:
    """Deterministic data where every 8-byte word differs: word k = mul * k (little-endian u64)."""
    import array

    with open(path, "wb") as fh:
        for off in range(0, size, 1 << 20):
            n = min(1 << 20, size - off)
            first = off // 8
            words = array.array("Q", range(first * mul, (first + (n + 7) // 8) * mul, mul) if mul else [0] * ((n + 7) // 8))
            fh.write(words.tobytes()[:n])
    return path


def _veritysetup_format(
    data: Path, hash_dev: Path, *, salt: bytes, uuid: str | None, dbs: int, hbs: int, hash_name: str = "sha256"
) -> str:
    argv = ["veritysetup", "format", str(data), str(hash_dev), f"--salt={salt.hex()}",
            f"--data-block-size={dbs}", f"--hash-block-size={hbs}", f"--hash={hash_name}"]  # fmt: skip
    argv += [f"--uuid={uuid}"] if uuid else ["--no-superblock"]
    out = run(argv).stdout.decode()
    m = re.search(r"Root hash:\s*([0-9a-f]+)", out)
    assert m, out
    return m.group(1)


# --- published vector (no tool needed) -----------------------------------------------------------


def test_reference_vector_uki_verity_md_section5(tmp_path: Path) -> None:
    """uki-verity.md §5 vectors, produced with veritysetup 2.6.1: data.img = 1 MiB, byte i = i mod 256."""
    data = tmp_path / "data.img"
    data.write_bytes(bytes(i % 256 for i in range(1 << 20)))
    assert hashlib.sha256(data.read_bytes()).hexdigest() == "fbbab289f7f94b25736c58be46a994c441fd02552cc6022352e3d86d2fab7c83"
    res = build_hash_tree(data, tmp_path / "hash-sb.img", VerityParams(salt=SALT, uuid=UUID))
    assert res.roothash == "8aa2f74295ea42326038971b0ff0db96b3e2319ac9a5d3fc18fd5e9cd7230a8e"
    assert (res.data_blocks, res.hash_blocks, res.hash_device_size) == (256, 3, 16384)
    hsb = (tmp_path / "hash-sb.img").read_bytes()
    assert hashlib.sha256(hsb).hexdigest() == "680909940bba47f59836ee6843ac7beac835e82d22fca0d19ad6b6ce3d89ea1f"
    res2 = build_hash_tree(data, tmp_path / "hash-nosb.img", VerityParams(salt=SALT, uuid="", superblock=False))
    assert res2.roothash == res.roothash and res2.hash_start_block == 0
    assert hashlib.sha256((tmp_path / "hash-nosb.img").read_bytes()).hexdigest() == (
        "36fa27b07d48c92b251a06942f04d3069355576ce3998d7c3c52bc677c2965b1"
    )
    # 4096 zero bytes, --no-superblock: root = H(salt || block), no hash blocks.
    one = tmp_path / "one.img"
    one.write_bytes(bytes(4096))
    r1 = build_hash_tree(one, tmp_path / "one.hash", VerityParams(salt=SALT, uuid="", superblock=False))
    assert r1.roothash == "4ce3ecf32c133bf6321901b6092219474b6ac91a19d0304621d629e6bb9987dc"
    assert r1.hash_blocks == 0 and (tmp_path / "one.hash").stat().st_size == 0


# --- live oracle -----------------------------------------------------------------------------------

CASES = [
    # (data bytes, data block size, hash block size, expected levels)
    pytest.param(4096, 4096, 4096, 0, id="1-block"),
    pytest.param(2 * 4096, 4096, 4096, 1, id="2-blocks-1-level"),
    pytest.param(300 * 4096, 4096, 4096, 2, id="300-blocks-2-levels"),
    pytest.param(300 * 4096, 4096, 512, 3, id="300-blocks-3-levels-hbs512"),
    pytest.param(5000 * 4096, 4096, 512, 4, id="5000-blocks-4-levels-hbs512"),
    pytest.param(1000 * 1024, 1024, 4096, 2, id="dbs1024"),
    pytest.param((128 * 128 + 1) * 4096, 4096, 4096, 3, id="64MiB-3-levels-parallel"),
]


@pytest.mark.oracle
@pytest.mark.parametrize(("size", "dbs", "hbs", "levels"), CASES)
@pytest.mark.parametrize("superblock", [True, False], ids=["sb", "nosb"])
def test_matches_veritysetup(tmp_path: Path, size: int, dbs: int, hbs: int, levels: int, superblock: bool) -> None:
    require_tool("veritysetup")
    data = _pattern_file(tmp_path / "data.img", size, mul=31)
    uuid = UUID if superblock else None
    want_root = _veritysetup_format(data, tmp_path / "oracle.hash", salt=SALT, uuid=uuid, dbs=dbs, hbs=hbs)
    params = VerityParams(salt=SALT, uuid=UUID, data_block_size=dbs, hash_block_size=hbs, superblock=superblock)
    assert len(verity.compute_geometry(size // dbs, params).level_blocks) == levels
    res = build_hash_tree(data, tmp_path / "mine.hash", params, workers=2)
    assert res.roothash == want_root
    assert (tmp_path / "mine.hash").read_bytes() == (tmp_path / "oracle.hash").read_bytes()
    assert res.hash_device_size == (tmp_path / "oracle.hash").stat().st_size
    # veritysetup verify accepts our hash device (it needs the superblock or explicit parameters).
    extra = [] if superblock else ["--no-superblock", f"--salt={SALT.hex()}",
                                   f"--data-block-size={dbs}", f"--hash-block-size={hbs}"]  # fmt: skip
    run(["veritysetup", "verify", str(data), str(tmp_path / "mine.hash"), res.roothash, *extra])
    if superblock:
        assert verify_hash_tree(data, tmp_path / "mine.hash", roothash=want_root) == want_root


@pytest.mark.oracle
@pytest.mark.parametrize("hash_name", ["sha1", "sha512"])
def test_other_hashes_match_veritysetup(tmp_path: Path, hash_name: str) -> None:
    """sha1 digests (20 bytes) are stored in 32-byte slots; sha512 gives 64 hashes per 4 KiB block."""
    require_tool("veritysetup")
    data = _pattern_file(tmp_path / "data.img", 300 * 4096, mul=5)
    want = _veritysetup_format(data, tmp_path / "o", salt=SALT, uuid=UUID, dbs=4096, hbs=4096, hash_name=hash_name)
    res = build_hash_tree(data, tmp_path / "m", VerityParams(salt=SALT, uuid=UUID, hash_name=hash_name))
    assert res.roothash == want
    assert (tmp_path / "m").read_bytes() == (tmp_path / "o").read_bytes()
    assert verify_hash_tree(data, tmp_path / "m") == want


@pytest.mark.oracle
def test_superblock_fields_match_veritysetup_dump(tmp_path: Path) -> None:
    require_tool("veritysetup")
    data = _pattern_file(tmp_path / "d.img", 40 * 4096)
    _veritysetup_format(data, tmp_path / "h", salt=SALT[:7], uuid=UUID, dbs=4096, hbs=4096)
    dump = run(["veritysetup", "dump", str(tmp_path / "h")]).stdout.decode()
    fields = dict(re.findall(r"^([A-Za-z ]+):\s*(\S*)", dump, re.M))
    sb = verity.read_superblock(tmp_path / "h")
    assert sb.uuid == fields["UUID"]
    assert str(sb.hash_type) == fields["Hash type"]
    assert str(sb.data_blocks) == fields["Data blocks"]
    assert str(sb.data_block_size) == fields["Data block size"]
    assert str(sb.hash_block_size) == fields["Hash block size"]
    assert sb.hash_name == fields["Hash algorithm"]
    assert sb.salt.hex() == fields["Salt"]
    # and our packer produces the same 512 bytes
    assert verity.pack_superblock(sb.params(), sb.data_blocks) == (tmp_path / "h").read_bytes()[:512]


@pytest.mark.oracle
def test_verify_at_offsets_in_one_file(tmp_path: Path) -> None:
    """veritysetup's appended layout (--hash-offset, uki-verity.md §5 "combo.img"), read back by verify_hash_tree."""
    require_tool("veritysetup")
    combo = _pattern_file(tmp_path / "combo.img", 256 * 4096, mul=7)
    out = run(["veritysetup", "format", str(combo), str(combo), f"--salt={SALT.hex()}", f"--uuid={UUID}",
               "--hash-offset=1048576", "--data-blocks=256"]).stdout.decode()  # fmt: skip
    want = re.search(r"Root hash:\s*([0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    assert verify_hash_tree(combo, combo, hash_offset=1 << 20) == want


@pytest.mark.oracle
def test_unaligned_data_refused_padded_matches(tmp_path: Path) -> None:
    """veritysetup floors a 5000-byte file to 1 block (tail unprotected); teeform refuses; padded input matches."""
    require_tool("veritysetup")
    data = tmp_path / "odd.img"
    data.write_bytes(os.urandom(5000))
    with pytest.raises(TeeformError, match="not a multiple"):
        build_hash_tree(data, tmp_path / "h", VerityParams(salt=SALT, uuid=UUID))
    assert not (tmp_path / "h").exists()
    with open(data, "ab") as fh:
        fh.truncate(8192)
    want = _veritysetup_format(data, tmp_path / "o", salt=SALT, uuid=UUID, dbs=4096, hbs=4096)
    assert build_hash_tree(data, tmp_path / "h", VerityParams(salt=SALT, uuid=UUID)).roothash == want


def test_empty_data_refused(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(TeeformError, match="empty"):
        build_hash_tree(tmp_path / "e", tmp_path / "h", VerityParams(salt=SALT, uuid=UUID))


def test_verify_detects_tampering(tmp_path: Path) -> None:
    data = _pattern_file(tmp_path / "d.img", 600 * 4096)
    res = build_hash_tree(data, tmp_path / "h", VerityParams(salt=SALT, uuid=UUID))
    assert verify_hash_tree(data, tmp_path / "h") == res.roothash
    with pytest.raises(TeeformError, match="root hash"):
        verify_hash_tree(data, tmp_path / "h", roothash="00" * 32)
    with open(data, "r+b") as fh:
        fh.seek(123 * 4096 + 5)
        fh.write(b"X")
    with pytest.raises(TeeformError, match=r"tree level 0, 0 = leaves\), covering data block 123 "):
        verify_hash_tree(data, tmp_path / "h")
    (tmp_path / "nosb").write_bytes(bytes(8192))
    with pytest.raises(TeeformError, match="superblock"):
        verify_hash_tree(data, tmp_path / "nosb")


def test_parallel_equals_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verity, "_PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(verity, "_TASK_BYTES", 5 * 4096)  # many small, unevenly split tasks
    data = _pattern_file(tmp_path / "d.img", 1000 * 4096, mul=3)
    p = VerityParams(salt=SALT, uuid=UUID)
    a = build_hash_tree(data, tmp_path / "a", p, workers=1)
    b = build_hash_tree(data, tmp_path / "b", p, workers=2)
    assert a == b and (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_derived_salt_and_uuid_are_deterministic(tmp_path: Path) -> None:
    d1 = _pattern_file(tmp_path / "a", 8 * 4096)
    d2 = tmp_path / "b"
    d2.write_bytes(d1.read_bytes()[:-1] + b"\xff")
    p1, p1b, p2 = verity.params_for_image(d1), verity.params_for_image(d1), verity.params_for_image(d2)
    assert p1 == p1b and len(p1.salt) == 32
    assert p1.salt != p2.salt and p1.uuid != p2.uuid
    u = uuidlib.UUID(p1.uuid)
    assert u.version == 8 and u.variant == uuidlib.RFC_4122
    digest = hashlib.sha256(d1.read_bytes()).hexdigest()
    assert verity.derive_salt(digest) == verity.derive_salt(bytes.fromhex(digest)) == p1.salt


def test_params_validation() -> None:
    with pytest.raises(TeeformError, match="power of two"):
        VerityParams(salt=SALT, uuid=UUID, data_block_size=3000)
    with pytest.raises(TeeformError, match="at most 256"):
        VerityParams(salt=bytes(257), uuid=UUID)
    with pytest.raises(TeeformError, match="not a UUID"):
        VerityParams(salt=SALT, uuid="nope")
    with pytest.raises(TeeformError, match="not supported"):
        VerityParams(salt=SALT, uuid=UUID, hash_name="nosuchhash")


def test_dm_table() -> None:
    """dm-mod.create table fields per uki-verity.md §5 (data_sectors 2048, 256 blocks, start block 1)."""
    r = verity.VerityResult(
        roothash="ab" * 32, salt=SALT.hex(), uuid=UUID, hash_name="sha256", data_block_size=4096,
        hash_block_size=4096, data_blocks=256, hash_blocks=3, hash_device_size=16384, hash_start_block=1,
    )  # fmt: skip
    assert r.dm_table("/dev/vda2", "/dev/vda3") == (
        f"0 2048 verity 1 /dev/vda2 /dev/vda3 4096 4096 256 1 sha256 {'ab' * 32} {SALT.hex()}"
    )
