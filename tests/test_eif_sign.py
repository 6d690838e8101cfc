"""EIF signing (image_builder.formats.eif_sign): §7.3 CBOR vectors, COSE_Sign1 checked with the openssl CLI, PCR8.

Oracles:
* the two byte-exact CBOR vectors of eif-nitro.md §7.3 (IMGFMT ``src/utils/cbor.rs`` at commit
  1446095862856f53c065c6c77f112ce9e03feb89, serde_cbor 0.11 output);
* ``openssl`` (Debian): generates the P-384 key and certificate, converts the certificate to DER,
  and verifies the ECDSA signature over a Sig_structure the test assembles byte by byte (RFC 8152
  §4.4), so neither cbor2 nor cryptography sits on the verification path.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from image_builder.formats import eif, eif_sign
from image_builder.formats.eif import SectionSource, SectionType
from teeform.errors import TeeformError

VECTOR_PCRINFO = (
    "a26e72656769737465725f696e646578006e72656769737465725f76616c75659830000102030405060708090a0b0c0d0e0f1011121314"
    "15161718181819181a181b181c181d181e181f1820182118221823182418251826182718281829182a182b182c182d182e182f")
VECTOR_SECTION = (
    "81a2737369676e696e675f6365727469666963617465983b182d182d182d182d182d1842184518471849184e1820184318451852"
    "18541849184618491843184118541845182d182d182d182d182d0a184d1849184918420a182d182d182d182d182d1845184e1844"
    "182018431845185218541849184618491843184118541845182d182d182d182d182d0a697369676e61747572658a18d218841844"
    "18a1011838182218a018401840"
)


def test_section_7_3_vectors() -> None:
    assert eif_sign.pcr_info_cbor(bytes(range(48)), 0).hex() == VECTOR_PCRINFO
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    sig = bytes.fromhex("d28444a1013822a04040")
    assert eif_sign.signature_section_cbor([(pem, sig)]).hex() == VECTOR_SECTION
    parsed = eif_sign.parse_signature_section(bytes.fromhex(VECTOR_SECTION))
    assert parsed == [eif_sign.PcrSignature(pem, sig)]


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A P-384 key and self-signed certificate made by the openssl CLI; returns (key, cert, cert DER)."""
    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("keys")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-subj", "/CN=teeform test signer",
                    "-days", "3650"], check=True, capture_output=True)
    der = subprocess.run([openssl, "x509", "-in", str(d / "cert.pem"), "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return d / "key.pem", d / "cert.pem", der


def _bstr_head(n: int) -> bytes:
    return bytes([0x40 + n]) if n < 24 else (b"\x58" + bytes([n]) if n < 256 else b"\x59" + n.to_bytes(2, "big"))


def _der_int(v: bytes) -> bytes:
    v = v.lstrip(b"\0") or b"\0"
    if v[0] & 0x80:
        v = b"\0" + v
    return b"\x02" + bytes([len(v)]) + v


def test_cose_sign1_verifies_with_openssl(keypair: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    key, cert, der = keypair
    signer = eif_sign.EifSigner.load(key, cert)
    pcr0 = hashlib.sha384(b"some image").digest()
    section, cert_der = signer(pcr0)
    assert cert_der == der
    entry = eif_sign.parse_signature_section(section)[0]
    assert entry.signing_certificate == cert.read_bytes()  # the PEM file bytes, as nitro-cli stores them

    cose = entry.signature
    payload = eif_sign.pcr_info_cbor(pcr0, 0)
    # untagged COSE_Sign1: 84, bstr(a1 01 38 22), {} , bstr(payload), bstr(96-byte r||s)   (eif-nitro.md §1.7, §4.2)
    head = b"\x84" + b"\x44\xa1\x01\x38\x22" + b"\xa0" + _bstr_head(len(payload))
    assert cose.startswith(head + payload + b"\x58\x60") and len(cose) == len(head) + len(payload) + 2 + 96
    raw = cose[-96:]
    sig_structure = b"\x84" + b"\x6aSignature1" + b"\x44\xa1\x01\x38\x22" + b"\x40" + _bstr_head(len(payload)) + payload
    body = _der_int(raw[:48]) + _der_int(raw[48:])
    (tmp_path / "sig.der").write_bytes(b"\x30" + bytes([len(body)]) + body)
    (tmp_path / "tbs").write_bytes(sig_structure)
    subprocess.run([openssl, "x509", "-in", str(cert), "-pubkey", "-noout", "-out", str(tmp_path / "pub.pem")], check=True)
    out = subprocess.run([openssl, "dgst", "-sha384", "-verify", str(tmp_path / "pub.pem"), "-signature",
                          str(tmp_path / "sig.der"), str(tmp_path / "tbs")], capture_output=True, text=True)
    assert out.returncode == 0 and "Verified OK" in out.stdout
    assert eif_sign.verify_pcr_signature(entry, pcr0)
    assert not eif_sign.verify_pcr_signature(entry, bytes(48))
    assert signer(pcr0)[0] == section  # deterministic ECDSA (RFC 6979): signed EIFs are reproducible


def test_signed_eif_pcr8_and_unchanged_pcr0(keypair: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    key, cert, der = keypair
    sections = [SectionSource(SectionType.KERNEL, data=b"k"), SectionSource(SectionType.CMDLINE, data=b"c"),
                SectionSource(SectionType.METADATA, data=b"{}"), SectionSource(SectionType.RAMDISK, data=b"r0"),
                SectionSource(SectionType.RAMDISK, data=b"r1")]
    with open(tmp_path / "u.eif", "w+b") as fh:
        unsigned = eif.write_eif(fh, sections)
    with open(tmp_path / "s.eif", "w+b") as fh:
        signed = eif.write_eif(fh, sections, signer=eif_sign.EifSigner.load(key, cert))
    expected_pcr8 = hashlib.sha384(bytes(48) + hashlib.sha384(der).digest()).digest()
    info = eif.read_eif(tmp_path / "s.eif")
    assert info.pcrs.pcr8 == signed.pcrs.pcr8 == expected_pcr8
    assert info.pcrs.pcr0 == unsigned.pcrs.pcr0 and info.signature_check is True
    assert [s.type for s in info.sections][-1] is SectionType.SIGNATURE
    report = eif.measure_report(tmp_path / "s.eif")
    assert list(report.measurements) == ["PCR0", "PCR1", "PCR2", "PCR8", "ImageSha384"]
    assert report.facts["IsSigned"] is True and report.facts["SignatureCheck"] is True


def test_bad_keys_are_refused(keypair: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    key, cert, _ = keypair
    subprocess.run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(tmp_path / "p256.pem")],
                   check=True)
    with pytest.raises(TeeformError, match="must be an EC P-384"):
        eif_sign.EifSigner.load(tmp_path / "p256.pem", cert)
    subprocess.run([openssl, "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(tmp_path / "other.pem")],
                   check=True)
    with pytest.raises(TeeformError, match="does not match the signing key"):
        eif_sign.EifSigner.load(tmp_path / "other.pem", cert)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(TeeformError, match="not a PEM X.509 certificate"):
        eif_sign.EifSigner.load(key, tmp_path / "junk.pem")


def test_malformed_signature_section() -> None:
    with pytest.raises(TeeformError, match="not valid CBOR"):
        eif_sign.parse_signature_section(b"\xff\xff")
    with pytest.raises(TeeformError, match="array of byte values"):
        eif_sign.parse_signature_section(bytes.fromhex("81a2737369676e696e675f6365727469666963617465" "4100"
                                                       "697369676e617475726580"))
