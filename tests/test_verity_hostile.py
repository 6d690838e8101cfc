"""Hostile dm-verity superblocks (issue 7 item 3): algorithm names with NUL, unsupported hashes,
other hash types and bad block sizes give one error naming the file and the superblock field.

The superblock layout is cryptsetup's ``struct verity_sb`` (cryptsetup lib/verity/verity.c; also
``shared/reference/uki-verity.md`` §5): signature[8] version u32 hash_type u32 uuid[16]
algorithm[32] data_block_size u32 hash_block_size u32 data_blocks u64 salt_size u16 ... The fields
are patched by offset into a superblock the project wrote for a small data file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from image_builder.formats import verity
from image_builder.formats.verity import VerityParams, build_hash_tree, verify_hash_tree
from teeform.errors import TeeformError

ALG_OFF, HASH_TYPE_OFF, DBS_OFF, HBS_OFF = 32, 12, 64, 68


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data.img"
    data.write_bytes(bytes(range(256)) * 64)  # 16 KiB = 4 blocks
    hash_dev = tmp_path / "hash.img"
    build_hash_tree(data, hash_dev, VerityParams(salt=b"s" * 32, uuid="12345678-1234-1234-1234-123456789abc"))
    return data, hash_dev


def patch(path: Path, offset: int, raw: bytes) -> None:
    b = bytearray(path.read_bytes())
    b[offset: offset + len(raw)] = raw
    path.write_bytes(bytes(b))


def refused(data: Path, hash_dev: Path) -> TeeformError:
    with pytest.raises(TeeformError) as e:
        verify_hash_tree(data, hash_dev)
    assert e.value.path == str(hash_dev), (e.value.path, str(e.value))
    assert "\n" not in str(e.value)
    return e.value


def test_unpatched_tree_verifies(tree: tuple[Path, Path]) -> None:
    assert len(verify_hash_tree(*tree)) == 64


@pytest.mark.parametrize("alg, text", [
    (b"sha256\0x", "holds bytes after its NUL terminator"),
    (b"sha2\x0056", "holds bytes after its NUL terminator"),
    (b"\0sha256", "holds bytes after its NUL terminator"),
    (b"", "is empty"),
    (b"a" * 32, "is not NUL-terminated"),
    (b"sha\xff256", "is not a lowercase ASCII name"),
    (b"SHA256", "is not a lowercase ASCII name"),
    (b"md4", "'md4' is not supported"),
    (b"shake_128", "'shake_128' is not supported"),       # hashlib knows it, but its digest has no fixed size
    (b"blake2b", "'blake2b' is not supported"),
    (b"sha3_256", "'sha3_256' is not supported"),         # the kernel spells it sha3-256
])
def test_algorithm_names(tree: tuple[Path, Path], alg: bytes, text: str) -> None:
    data, hash_dev = tree
    patch(hash_dev, ALG_OFF, alg.ljust(32, b"\0")[:32])
    e = refused(data, hash_dev)
    assert e.field == "superblock.algorithm" and text in str(e), str(e)


def test_hash_type_0_chromeos_is_refused(tree: tuple[Path, Path]) -> None:
    data, hash_dev = tree
    patch(hash_dev, HASH_TYPE_OFF, struct.pack("<I", 0))
    e = refused(data, hash_dev)
    assert "hash type 0 is not supported" in str(e), str(e)


@pytest.mark.parametrize("offset, value, field", [
    (DBS_OFF, 4097, "data_block_size"), (HBS_OFF, 0, "hash_block_size"), (HBS_OFF, 1 << 31, "hash_block_size"),
])
def test_block_sizes(tree: tuple[Path, Path], offset: int, value: int, field: str) -> None:
    data, hash_dev = tree
    patch(hash_dev, offset, struct.pack("<I", value))
    e = refused(data, hash_dev)
    assert e.field == f"superblock.{field}" and "power of two" in str(e), str(e)


def test_params_refuse_hash_names_the_kernel_does_not_share() -> None:
    for name in ("sha1", "sha224", "sha256", "sha384", "sha512"):
        VerityParams(salt=b"", uuid="12345678-1234-1234-1234-123456789abc", hash_name=name)
    for name in ("shake_256", "md5-sha1", "sha256\0", "SHA256"):
        with pytest.raises(TeeformError, match="not supported"):
            VerityParams(salt=b"", uuid="12345678-1234-1234-1234-123456789abc", hash_name=name)


def test_supported_hashes_are_hashlib_fixed_size_digests() -> None:
    import hashlib

    for name in verity.SUPPORTED_HASHES:
        assert hashlib.new(name).digest_size > 0
