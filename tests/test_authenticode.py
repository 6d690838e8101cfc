"""Authenticode digests against published TV-2 values, pesign (SHA-1/256) and osslsigncode (SHA-384)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import uki_vectors as V
from conftest import require_file, require_tool

from image_builder.formats.uki import SectionOrder, UkiInputs, build_uki
from image_builder.measure.authenticode import authenticode_digest
from image_builder.measure.vm import linux_authenticode
from teeform.errors import TeeformError


@pytest.fixture(scope="module")
def tv2_uki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("auth")
    files = V.write_tv2_inputs(d)
    require_file(V.STUB_252, "bookworm systemd-stub")
    out = d / "uki.efi"
    build_uki(UkiInputs(stub=V.STUB_252, linux=files["linux"], initrd=files["initrd"],
                        cmdline=files["cmdline"].read_bytes(), osrel=files["osrel"].read_bytes(),
                        uname=V.TV2_UNAME, section_order=SectionOrder.UKIFY_257), out)
    return out


def test_tv2_published_values(tv2_uki: Path) -> None:
    # uki-verity.md §2 TV-2: pesign, lief, signify and the author's implementation agree on these.
    assert authenticode_digest(tv2_uki, ("sha1", "sha256", "sha384")) == V.TV2_AUTHENTICODE


def pesign_hash(path: Path, digest: str | None = None) -> str:
    pesign = require_tool("pesign")
    argv = [pesign, "-h", "-i", str(path)] + (["-d", digest] if digest else [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    m = re.search(r"hash: ([0-9a-f]+)", out)
    assert m, out
    return m.group(1)


@pytest.mark.oracle
def test_pesign_on_stub_uki_and_signed_kernel(tv2_uki: Path) -> None:
    """The 252 stub has unaligned trailing data (its COFF symbol table); Debian's kernel carries a
    certificate table that must be excluded."""
    files = [tv2_uki, require_file(V.STUB_252, "bookworm systemd-stub"),
             require_file(V.STUB_254, "systemd 254 stub"), require_file(V.DEBIAN_KERNEL, "Debian kernel")]
    for f in files:
        ours = authenticode_digest(f, ("sha1", "sha256"))
        assert ours["sha256"] == pesign_hash(f), f
        assert ours["sha1"] == pesign_hash(f, "sha1"), f


def osslsigncode_sha384(signed: Path) -> str:
    osslsigncode = require_tool("osslsigncode")
    # verify fails on the self-signed certificate but still prints the digests; do not check rc.
    out = subprocess.run([osslsigncode, "verify", "-in", str(signed)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert "Message digest algorithm  : SHA384" in text, text
    m = re.search(r"Calculated message digest : ([0-9A-F]+)", text)
    assert m, text
    return m.group(1).lower()


def sign_sha384(src: Path, dst: Path, key: Path, cert: Path) -> None:
    osslsigncode = require_tool("osslsigncode")
    subprocess.run([osslsigncode, "sign", "-h", "sha384", "-certs", str(cert), "-key", str(key),
                    "-in", str(src), "-out", str(dst)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def test_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("key")
    openssl = require_tool("openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "k.pem"),
                    "-out", str(d / "c.pem"), "-days", "1", "-subj", "/CN=teeform test"], check=True, capture_output=True)
    return d / "k.pem", d / "c.pem"


@pytest.mark.oracle
def test_osslsigncode_sha384(tv2_uki: Path, test_key: tuple[Path, Path], tmp_path: Path) -> None:
    key, cert = test_key
    for src in (tv2_uki, require_file(V.DEBIAN_KERNEL, "Debian kernel")):
        signed = tmp_path / (src.name + ".signed")
        sign_sha384(src, signed, key, cert)
        expected = osslsigncode_sha384(signed)
        # Signing an 8-aligned image does not change its digest (uki-verity.md §4) ...
        assert authenticode_digest(src, ("sha384",))["sha384"] == expected
        # ... and the signed file's certificate table is excluded.
        assert authenticode_digest(signed, ("sha384",))["sha384"] == expected
    assert expected != V.TV2_AUTHENTICODE["sha384"]


@pytest.mark.oracle
def test_linux_section_authenticode_equals_kernel_file(tmp_path: Path) -> None:
    kernel = require_file(V.DEBIAN_KERNEL, "Debian kernel")
    require_file(V.STUB_252, "bookworm systemd-stub")
    out = tmp_path / "k.efi"
    build_uki(UkiInputs(stub=V.STUB_252, linux=kernel, initrd=None, cmdline=b"console=ttyS0", osrel=b"ID=x\n"), out)
    inner = linux_authenticode(out, ("sha256",))
    assert inner == {"sha256": pesign_hash(kernel)}


def test_not_a_pe(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"MZ" + bytes(100))
    with pytest.raises(TeeformError, match="PE"):
        authenticode_digest(p)
    with pytest.raises(TeeformError, match="cannot read"):
        authenticode_digest(tmp_path / "absent")
    with pytest.raises(TeeformError, match="unsupported"):
        authenticode_digest(p, ("md5",))
