"""UKI assembly: byte-identical to ukify (published TV-2/TV-3 and ukify 254 run live), read back by
pefile/objdump/objcopy, reproducible, atomic on errors; measure_report / predict_vm_measurements."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from pathlib import Path

import pefile
import pytest
import uki_vectors as V
from conftest import inputs_lock, locked, require_file, require_tool, tools_required

from image_builder.formats.uki import (
    SectionOrder,
    UkiInputs,
    build_uki,
    kernel_uname,
    read_uki_layout,
)
from image_builder.measure.vm import predict_vm_measurements
from image_builder.pipelines.report import uki_measure_report as measure_report
from teeform.errors import TeeformError
from teeform.manifest import OPTIONAL_MEASUREMENTS, REQUIRED_MEASUREMENTS, ArtifactKind


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tv2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return V.write_tv2_inputs(tmp_path_factory.mktemp("tv2"))


def tv_inputs(files: dict[str, Path], stub: Path, order: SectionOrder) -> UkiInputs:
    return UkiInputs(stub=stub, linux=files["linux"], initrd=files["initrd"], cmdline=files["cmdline"].read_bytes(),
                     osrel=files["osrel"].read_bytes(), uname=V.TV2_UNAME, section_order=order)


def stub(path: Path, sha: str) -> Path:
    require_file(path, "systemd-stub")
    assert sha256(path) == sha, f"{path} is not the stub the vectors were made with"
    return path


def test_tv2_byte_identical_to_ukify_257(tv2: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "uki.efi"
    layout = build_uki(tv_inputs(tv2, stub(V.STUB_252, V.STUB_252_SHA256), SectionOrder.UKIFY_257), out)
    assert sha256(out) == V.TV2_FILE_SHA256  # uki-verity.md §2 TV-2 (ukify 257.13 output)
    assert layout.size == out.stat().st_size == V.TV2_FILE_SIZE
    # Independent reader: pefile.
    pe = pefile.PE(str(out), fast_load=True)
    assert pe.get_warnings() == []
    got = {s.Name.rstrip(b"\0").decode(): (s.VirtualAddress, s.Misc_VirtualSize) for s in pe.sections}
    for name, rva, vs in V.TV2_LAYOUT:
        assert got[name] == (rva, vs)
    assert pe.FILE_HEADER.TimeDateStamp == 0 and pe.OPTIONAL_HEADER.CheckSum == 0
    assert pe.OPTIONAL_HEADER.SizeOfImage == V.TV2_SIZE_OF_IMAGE
    assert pe.FILE_HEADER.PointerToSymbolTable == 0 and pe.FILE_HEADER.NumberOfSymbols == 0
    # Our own layout agrees with pefile and has the right digests.
    for s in layout.sections:
        assert got[s.name] == (s.virtual_address, s.virtual_size)
    assert layout.section(".linux").digests["sha256"] == sha256(tv2["linux"])  # type: ignore[union-attr]
    assert layout.section(".sbat").origin == "replaced"  # type: ignore[union-attr]


def test_tv3_byte_identical_to_ukify_254(tv2: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "uki254.efi"
    layout = build_uki(tv_inputs(tv2, stub(V.STUB_254, V.STUB_254_SHA256), SectionOrder.UKIFY_254), out)
    assert sha256(out) == V.TV3_FILE_SHA256  # uki-verity.md §2 TV-3
    sbat = layout.section(".sbat")
    assert sbat is not None and sbat.virtual_size == V.TV3_SBAT_LEN
    assert [s.name for s in layout.sections][-1] == ".linux"  # ukify 254 puts .linux last


def run_ukify_254(args: list[str], cwd: Path) -> None:
    python = Path("/usr/bin/python3")
    require_file(V.UKIFY_254, "ukify 254 (.cache/sd254)")
    probe = subprocess.run([str(python), "-c", "import pefile"], capture_output=True)
    if probe.returncode != 0:
        msg = "/usr/bin/python3 lacks pefile (apt-get install python3-pefile)"
        pytest.fail(msg) if tools_required() else pytest.skip(msg)
    subprocess.run([str(python), str(V.UKIFY_254), "build", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.oracle
@pytest.mark.parametrize("stub_name,stub_sha", [("bookworm.stub", V.STUB_252_SHA256), ("sd254.stub", V.STUB_254_SHA256)],
                         ids=["stub252", "stub254"])
def test_live_ukify_254_real_kernel_byte_identical(tmp_path: Path, stub_name: str, stub_sha: str) -> None:
    """ukify 254 run live on Debian's signed kernel (a real PE with a certificate table) and both
    stubs; ukify scrapes .uname itself, so this also checks kernel_uname() (against the release the
    set-up read from the package's file names, vmlinuz-<release>)."""
    kernel = V.DEBIAN_KERNEL
    stub_path = stub(locked(stub_name), stub_sha)
    (tmp_path / "initrd").write_bytes(bytes((i * 13) % 256 for i in range(300_001)))
    (tmp_path / "cmdline").write_bytes(b"console=ttyS0 ro roothash=00ff\n")
    (tmp_path / "osrel").write_bytes(b'ID=debian\nVERSION_ID="12"\n')
    run_ukify_254([f"--linux={kernel}", "--initrd=initrd", "--cmdline=@cmdline", "--os-release=@osrel",
                   f"--stub={stub_path}", "--output=ukify.efi"], tmp_path)
    uname = kernel_uname(kernel)
    assert uname == inputs_lock().kernel_release.encode()
    ours = tmp_path / "ours.efi"
    build_uki(UkiInputs(stub=stub_path, linux=kernel, initrd=tmp_path / "initrd",
                        cmdline=(tmp_path / "cmdline").read_bytes(), osrel=(tmp_path / "osrel").read_bytes(),
                        uname=uname, section_order=SectionOrder.UKIFY_254), ours)
    assert sha256(ours) == sha256(tmp_path / "ukify.efi")


@pytest.mark.oracle
def test_sections_extracted_by_objcopy_equal_inputs(tv2: dict[str, Path], tmp_path: Path) -> None:
    require_tool("objcopy")
    objdump = require_tool("objdump")
    out = tmp_path / "uki.efi"
    build_uki(tv_inputs(tv2, stub(V.STUB_254, V.STUB_254_SHA256), SectionOrder.UKIFY_257), out)
    listing = subprocess.run([objdump, "-h", str(out)], capture_output=True, text=True, check=True).stdout
    for name in (".osrel", ".cmdline", ".uname", ".linux", ".initrd", ".sbat"):
        assert f" {name} " in listing
    expected = {".linux": tv2["linux"].read_bytes(), ".initrd": tv2["initrd"].read_bytes(),
                ".osrel": tv2["osrel"].read_bytes(), ".cmdline": tv2["cmdline"].read_bytes(), ".uname": V.TV2_UNAME}
    for name, content in expected.items():
        dump = tmp_path / f"dump{name}"
        subprocess.run(["objcopy", "-O", "binary", f"--only-section={name}", str(out), str(dump)], check=True)
        assert dump.read_bytes() == content, name
    dump = tmp_path / "dump.sbat"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.sbat", str(out), str(dump)], check=True)
    sbat = dump.read_bytes()
    assert sbat.endswith(b"uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/\n\0")
    assert b"systemd,1,The systemd Developers,systemd,254,https://systemd.io/\n" in sbat


def test_reproducible_and_time_date_stamp_override(tv2: dict[str, Path], tmp_path: Path) -> None:
    inputs = tv_inputs(tv2, stub(V.STUB_252, V.STUB_252_SHA256), SectionOrder.UKIFY_257)
    a, b, c = tmp_path / "a.efi", tmp_path / "b.efi", tmp_path / "c.efi"
    build_uki(inputs, a)
    build_uki(inputs, b)
    assert a.read_bytes() == b.read_bytes()
    from dataclasses import replace

    build_uki(replace(inputs, time_date_stamp=1_700_000_000), c)
    da, dc = a.read_bytes(), c.read_bytes()
    pe_off = struct.unpack_from("<I", da, 0x3C)[0]
    diff = [i for i in range(len(da)) if da[i] != dc[i]]
    assert diff and all(pe_off + 8 <= i < pe_off + 12 for i in diff)  # only COFF TimeDateStamp
    assert pefile.PE(str(c), fast_load=True).FILE_HEADER.TimeDateStamp == 1_700_000_000
    assert len(dc) % 8 == 0


def test_empty_cmdline_and_no_initrd_leave_sections_out(tv2: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "u.efi"
    layout = build_uki(UkiInputs(stub=stub(V.STUB_252, V.STUB_252_SHA256), linux=tv2["linux"], initrd=None,
                                 cmdline=b"", osrel=b"ID=x\n"), out)
    names = [s.name for s in layout.sections]
    assert ".cmdline" not in names and ".initrd" not in names and ".uname" not in names
    assert [s.name for s in read_uki_layout(out).sections] == names


def test_errors_leave_nothing_behind(tv2: dict[str, Path], tmp_path: Path) -> None:
    s = stub(V.STUB_252, V.STUB_252_SHA256)
    out = tmp_path / "out.efi"
    with pytest.raises(TeeformError) as e:
        build_uki(UkiInputs(stub=s, linux=tmp_path / "missing", initrd=None, cmdline=b"x", osrel=b"x"), out)
    assert "missing" in str(e.value)
    with pytest.raises(TeeformError, match="sbat"):
        build_uki(UkiInputs(stub=s, linux=tv2["linux"], initrd=None, cmdline=b"x", osrel=b"x", sbat=b"nope\n"), out)
    with pytest.raises(TeeformError, match="does not fit"):
        big = b"sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n" + b"x,1\n" * 200
        build_uki(UkiInputs(stub=s, linux=tv2["linux"], initrd=None, cmdline=b"x", osrel=b"x", sbat=big), out)
    # A "signed" stub (Certificate Table entry set) is refused like ukify does.
    signed = tmp_path / "signed.stub"
    data = bytearray(s.read_bytes())
    pe_off = struct.unpack_from("<I", data, 0x3C)[0]
    struct.pack_into("<II", data, pe_off + 24 + 112 + 32, len(data), 8)
    signed.write_bytes(bytes(data))
    with pytest.raises(TeeformError, match="signed"):
        build_uki(UkiInputs(stub=signed, linux=tv2["linux"], initrd=None, cmdline=b"x", osrel=b"x"), out)
    with pytest.raises(TeeformError, match="PE"):
        build_uki(UkiInputs(stub=tv2["initrd"], linux=tv2["linux"], initrd=None, cmdline=b"x", osrel=b"x"), out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_measure_report_tv2(tv2: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "uki.efi"
    build_uki(tv_inputs(tv2, stub(V.STUB_252, V.STUB_252_SHA256), SectionOrder.UKIFY_257), out)
    rep = measure_report(out)
    assert rep.kind == "uki"
    assert rep.measurements["AuthenticodeSha256"] == V.TV2_AUTHENTICODE["sha256"]
    assert rep.measurements["AuthenticodeSha384"] == V.TV2_AUTHENTICODE["sha384"]
    assert rep.measurements["PCR11_sha256"] == V.TV2_PCR11_252["sha256"]
    assert rep.measurements["PCR11_sha384"] == V.TV2_PCR11_252["sha384"]
    assert "systemd-stub 252" in rep.facts["StubVersion"]
    assert rep.facts["PCR11Sections"] == ".linux .osrel .cmdline .initrd"
    assert any("PCR 12" in n for n in rep.notes)
    assert {r["name"] for r in rep.sections} >= {".linux", ".initrd", ".sbat"}
    # Dispatch through the CLI's sniffing helper.
    from teeform.commands.measure import measure_path

    assert measure_path(out).measurements == rep.measurements


def test_predict_vm_measurements_names_match_manifest(tv2: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "uki.efi"
    build_uki(tv_inputs(tv2, stub(V.STUB_254, V.STUB_254_SHA256), SectionOrder.UKIFY_254), out)
    pred = predict_vm_measurements(out)
    m = pred["measurements"]
    allowed = {**REQUIRED_MEASUREMENTS[ArtifactKind.VM_IMAGE], **OPTIONAL_MEASUREMENTS[ArtifactKind.VM_IMAGE]}
    assert set(REQUIRED_MEASUREMENTS[ArtifactKind.VM_IMAGE]) - set(m) == {"roothash"}
    for name, value in m.items():
        assert len(value) == allowed[name], name
    assert m["pcr11_sha256"] == V.TV3_PCR11_254["sha256"] and m["pcr11_sha384"] == V.TV3_PCR11_254["sha384"]
    assert m["pcr12_sha256"] == "00" * 32
    assert "rtmr2" not in m and "not predicted" in pred["details"]["rtmr2"]
    assert pred["details"]["stub_version"] == 254
    # Forcing the 252 semantics drops .uname/.sbat from PCR 11 (uki-verity.md §0.2).
    assert predict_vm_measurements(out, stub_version=252)["measurements"]["pcr11_sha256"] != m["pcr11_sha256"]


def test_kernel_uname_non_bzimage(tv2: dict[str, Path]) -> None:
    assert kernel_uname(tv2["linux"]) is None


@pytest.mark.oracle
def test_measure_cli_on_a_uki_built_by_ukify_254(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`teeform measure --json` on a UKI that ukify 254 (bookworm-backports, .cache/sd254) built with the 254
    stub and Debian's kernel - an artifact built elsewhere. Oracles: systemd-measure 254 `calculate --phase=`
    on the sections objcopy extracts (PCR 11), `pesign -h` (Authenticode SHA-256), objcopy (section digests)."""
    from test_authenticode import pesign_hash
    from test_pcr11 import systemd_measure

    from teeform.cli import main

    kernel = V.DEBIAN_KERNEL
    stub(V.STUB_254, V.STUB_254_SHA256)
    objcopy = require_tool("objcopy")
    (tmp_path / "initrd").write_bytes(bytes((i * 31) % 256 for i in range(123_457)))
    (tmp_path / "cmdline").write_bytes(b"console=ttyS0 roothash=" + b"ab" * 32)
    (tmp_path / "osrel").write_bytes(b'ID=debian\nVERSION_ID="12"\n')
    run_ukify_254([f"--linux={kernel}", "--initrd=initrd", "--cmdline=@cmdline", "--os-release=@osrel",
                   f"--stub={V.STUB_254}", "--output=ukify.efi"], tmp_path)
    uki = tmp_path / "ukify.efi"
    capsys.readouterr()
    assert main(["measure", "--json", str(uki)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["kind"] == "uki"
    files = {}
    for name in (".linux", ".osrel", ".cmdline", ".initrd", ".uname", ".sbat"):
        f = tmp_path / f"sec{name}"
        subprocess.run([objcopy, "-O", "binary", f"--only-section={name}", str(uki), str(f)], check=True)
        files[name] = f
    want = systemd_measure(254, files, ["sha256", "sha384"], [""])
    assert rep["measurements"]["PCR11_sha256"] == next(e["hash"] for e in want["sha256"] if e["pcr"] == 11)
    assert rep["measurements"]["PCR11_sha384"] == next(e["hash"] for e in want["sha384"] if e["pcr"] == 11)
    assert rep["measurements"]["AuthenticodeSha256"] == pesign_hash(uki)
    assert rep["measurements"]["PCR12_sha256"] == "00" * 32  # expected state: nothing measured into PCR 12
    assert "systemd-stub 254" in rep["facts"]["StubVersion"]
    rows = {r["name"]: r for r in rep["sections"]}
    for name, f in files.items():
        assert rows[name]["sha256"] == sha256(f), name
        assert rows[name]["virtual_size"] == f.stat().st_size, name
    # The 254 stub's enum order (uki-verity.md §1.1): linux osrel cmdline initrd uname sbat.
    measured = sorted((int(r["pcr11"]), n) for n, r in rows.items() if r["pcr11"] != "-")
    assert measured == [(1, ".linux"), (2, ".osrel"), (3, ".cmdline"), (4, ".initrd"), (5, ".uname"), (6, ".sbat")]
    assert any("PCR 12" in n and "does not pin the kernel command line" in n for n in rep["notes"])
    # The text form prints the same values and the per-section table.
    assert main(["measure", str(uki)]) == 0
    text = capsys.readouterr().out
    assert rep["measurements"]["PCR11_sha256"] in text and "virtual_size" in text and "note: " in text


@pytest.mark.oracle
def test_measure_a_pe_that_is_not_a_uki(capsys: pytest.CaptureFixture[str]) -> None:
    """systemd-boot (and a bare stub) are PE files without .linux: Authenticode only (= pesign), no PCR 11."""
    from test_authenticode import pesign_hash

    from teeform.cli import main

    for f in (require_file(Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"), "systemd-boot"),
              stub(V.STUB_252, V.STUB_252_SHA256)):
        capsys.readouterr()
        assert main(["measure", "--json", str(f)]) == 0
        rep = json.loads(capsys.readouterr().out)
        assert rep["kind"] == "pe"
        assert set(rep["measurements"]) == {"AuthenticodeSha256", "AuthenticodeSha384"}
        assert rep["measurements"]["AuthenticodeSha256"] == pesign_hash(f)
        assert any("Not a UKI" in n for n in rep["notes"])
