"""The inputs lock (teeform/inputs_lock.py): the record scripts/setup.sh writes, and its checks.

Oracles: ``sha256sum`` (file and tree digests), ``dpkg-query -W``/``-S`` (versions and owners of installed
packages), the first line of each unpacked package's ``usr/share/doc/<pkg>/changelog.Debian.gz`` (Debian
policy §12.7: ``package (version) distribution; urgency=...``), and ``dpkg-deb -b`` to build small
synthetic packages for the failure cases (a ``.deb`` whose file set is not what teeform needs).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, inputs_lock, require_tool

from teeform import inputs_lock as L
from teeform.errors import TeeformError

KERNEL_CONFIG = "".join(f"{opt}=m\n" for opt in L.KERNEL_OPTIONS)


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split()[0]


def sha256sum_tree(path: Path) -> tuple[int, str]:
    """The shell pipeline of the module docstring, run by the shell."""
    script = "find . -type f | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum; find . -type f | wc -l"
    out = subprocess.run(["sh", "-c", script], cwd=path, capture_output=True, text=True, check=True).stdout.split()
    return int(out[2]), out[0]


# ------------------------------------------------------------------------------------- the real record
def test_every_recorded_digest_matches_the_file_on_disk() -> None:
    lock = inputs_lock()
    assert set(lock.inputs) == {s.name for s in L.INPUTS}
    for entry in lock.inputs.values():
        if entry.kind == "file":
            assert entry.path.is_file(), entry
            assert (entry.size, entry.sha256) == (entry.path.stat().st_size, sha256sum(entry.path)), entry.name
        else:
            assert not any(p.is_symlink() for p in entry.path.rglob("*")), "the shell oracle assumes no symlinks"
            assert (entry.size, entry.sha256) == sha256sum_tree(entry.path), entry.name


def test_installed_inputs_versions_and_owners_match_dpkg() -> None:
    lock = inputs_lock()
    for entry in lock.inputs.values():
        if entry.origin != "installed (dpkg)":
            continue
        ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", entry.package], capture_output=True, text=True,
                             check=True).stdout
        assert entry.version == ver, entry.name
        # dpkg knows the pre-usrmerge name of some files (/lib/systemd/... for /usr/lib/systemd/...).
        names = [str(entry.path), re.sub(r"^/usr/(lib|bin|sbin)/", r"/\1/", str(entry.path))]
        owners = subprocess.run(["dpkg-query", "-S", *names], capture_output=True, text=True).stdout
        assert re.search(rf"^{re.escape(entry.package)}(:\w+)?: ", owners, re.M), (entry.name, owners)
    for pkg, ver in lock.packages.items():
        got = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True).stdout
        assert got == ver, pkg


def test_unpacked_inputs_versions_match_the_packages_changelog() -> None:
    lock = inputs_lock()
    seen = set()
    for entry in lock.inputs.values():
        if not entry.origin.startswith("unpacked from "):
            continue
        assert entry.origin.startswith(f"unpacked from {entry.package}_"), entry  # <package>_<version>_<arch>.deb
        root = next(p for p in entry.path.parents if p.name in ("sd254", "kernel"))
        changelog = root / "usr/share/doc" / entry.package / "changelog.Debian.gz"
        if changelog.exists():  # the linux-image package ships only the upstream changelog
            first = gzip.decompress(changelog.read_bytes()).decode().splitlines()[0]
            m = re.match(r"^systemd \(([^)]+)\) ", first)  # the source package of all three
            assert m is not None and m.group(1) == entry.version, (entry.name, first)
            seen.add(entry.package)
    assert {"systemd", "systemd-boot-efi", "libsystemd-shared"} <= seen


def test_kernel_release_is_the_packages_file_names() -> None:
    lock = inputs_lock()
    rel = lock.kernel_release
    assert lock.get("kernel.vmlinuz").path.name == f"vmlinuz-{rel}"
    assert lock.get("kernel.config").path.name == f"config-{rel}"
    assert lock.get("kernel.modules").path.name == rel
    assert {lock.get(n).package for n in ("kernel.vmlinuz", "kernel.config", "kernel.modules")} == {f"linux-image-{rel}"}


def test_pins_hold_for_the_recorded_inputs() -> None:
    pins = json.loads((REPO / "tests/vectors/pins.json").read_text())
    lock = inputs_lock()
    for name, pin in pins.items():
        if name.startswith("_"):
            continue
        for key in ("sha256", "version"):
            if key in pin:
                assert getattr(lock.get(name), key) == pin[key], name


def test_cli_prints_paths_and_fields() -> None:
    lock = inputs_lock()
    run = [sys.executable, "-m", "teeform.inputs_lock"]
    out = subprocess.run([*run, "path", "kernel.vmlinuz"], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == str(lock.file("kernel.vmlinuz"))
    out = subprocess.run([*run, "get", "kernel_release"], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == lock.kernel_release
    out = subprocess.run([*run, "get", "busybox.version"], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == lock.get("busybox").version
    bad = subprocess.run([*run, "path", "no-such-input"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1 and "no input named 'no-such-input'" in bad.stderr


def test_setup_rerun_keeps_the_record(tmp_path: Path) -> None:
    """Idempotent: a second scripts/setup.sh (no apt) neither fetches nor rewrites anything."""
    lock = L.lock_path(REPO)
    before = (lock.read_bytes(), lock.stat().st_mtime_ns)
    r = subprocess.run([str(REPO / "scripts/setup.sh")], capture_output=True, text=True,
                       env={**os.environ, "TEEFORM_SKIP_APT": "1"})
    assert r.returncode == 0, r.stderr
    assert "unpacking" not in r.stderr and "wrote" not in r.stderr
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before


# ------------------------------------------------------------------------------------- reader errors
def test_missing_record_says_run_setup(tmp_path: Path) -> None:
    with pytest.raises(TeeformError, match="inputs lock not found") as ei:
        L.load_lock(tmp_path)
    assert ei.value.hint == "run scripts/setup.sh"
    r = subprocess.run([sys.executable, "-c", "import sys; from teeform.inputs_lock import main; "
                        f"import teeform.inputs_lock as L; L.REPO = __import__('pathlib').Path({str(tmp_path)!r}); "
                        "sys.exit(main(['path', 'busybox']))"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"error: {tmp_path}/.cache/inputs.lock.json: inputs lock not found "
                                     "(run scripts/setup.sh)"]


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(format="teeform-inputs-lock/0"), "format is 'teeform-inputs-lock/0'"),
    (lambda d: d.pop("kernel_release"), "kernel_release: expected a string"),
    (lambda d: d["inputs"]["busybox"].update(sha256="xyz"), "inputs.busybox: bad kind or sha256"),
    (lambda d: d["inputs"]["busybox"].update(size="12"), "inputs.busybox.size: expected an integer"),
    (lambda d: d["inputs"]["busybox"].pop("package"), "inputs.busybox.package: expected a string"),
])
def test_malformed_record_is_one_line(tmp_path: Path, mutate, match: str) -> None:
    data = json.loads(L.lock_path(REPO).read_text())
    mutate(data)
    (tmp_path / ".cache").mkdir()
    L.lock_path(tmp_path).write_text(json.dumps(data))
    with pytest.raises(TeeformError, match=re.escape(match)) as ei:
        L.load_lock(tmp_path)
    assert "\n" not in str(ei.value)


def test_relative_paths_resolve_under_the_checkout(tmp_path: Path) -> None:
    data = json.loads(L.lock_path(REPO).read_text())
    (tmp_path / ".cache").mkdir()
    L.lock_path(tmp_path).write_text(json.dumps(data))
    lock = L.load_lock(tmp_path)
    assert lock.file("kernel.vmlinuz") == tmp_path / data["inputs"]["kernel.vmlinuz"]["path"]
    assert lock.file("busybox") == Path(data["inputs"]["busybox"]["path"])
    with pytest.raises(TeeformError, match="no input named 'kernel'"):
        lock.get("kernel")


# ------------------------------------------------------------------------------------- unpack and write
def make_deb(tmp: Path, package: str, version: str, files: dict[str, bytes | str]) -> Path:
    """A minimal .deb built by dpkg-deb -b (mode 0755 for files under */systemd/ and boot/vmlinuz-*)."""
    dpkg_deb = require_tool("dpkg-deb")
    root = tmp / f"{package}-{version}-{len(list(tmp.iterdir()))}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(f"Package: {package}\nVersion: {version}\nArchitecture: amd64\n"
                                         "Maintainer: test <t@example.org>\nDescription: synthetic\n")
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        p.chmod(0o755 if "/systemd/" in f"/{rel}" else 0o644)
    deb = tmp / f"{package}_{version}_amd64.deb"
    subprocess.run([dpkg_deb, "--root-owner-group", "-b", str(root), str(deb)], check=True, capture_output=True)
    return deb


def kernel_deb(tmp: Path, release: str = "9.9.9-test", *, config: str | None = KERNEL_CONFIG,
               package: str | None = None) -> Path:
    files: dict[str, bytes | str] = {f"boot/vmlinuz-{release}": b"kernel",
                                     f"lib/modules/{release}/kernel/drivers/md/dm-verity.ko": b"\x7fELF"}
    if config is not None:
        files[f"boot/config-{release}"] = config
    return make_deb(tmp, package or f"linux-image-{release}", "9.9.9-1", files)


def sd254_debs(tmp: Path, version: str = "254.99-1") -> list[Path]:
    return [make_deb(tmp, "systemd", version, {"lib/systemd/ukify": "#!/usr/bin/python3\n",
                                               "lib/systemd/systemd-measure": b"\x7fELF"}),
            make_deb(tmp, "systemd-boot-efi", version, {"usr/lib/systemd/boot/efi/linuxx64.efi.stub": b"MZ"}),
            make_deb(tmp, "libsystemd-shared", version,
                     {"usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-254.so": b"\x7fELF"})]


def unpack_cli(source: str, dest: Path, debs: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "teeform.inputs_lock", "unpack", source, str(dest),
                           *map(str, debs)], capture_output=True, text=True)


def test_unpack_records_provenance(tmp_path: Path) -> None:
    deb = kernel_deb(tmp_path)
    dest = tmp_path / "cache/kernel"
    assert not L.have("kernel", dest)
    r = unpack_cli("kernel", dest, [deb])
    assert r.returncode == 0, r.stderr
    assert (dest / "boot/vmlinuz-9.9.9-test").read_bytes() == b"kernel"
    assert L.read_provenance("kernel", dest) == [{"package": "linux-image-9.9.9-test", "version": "9.9.9-1",
                                                  "deb": deb.name, "sha256": sha256sum(deb)}]
    assert L.have("kernel", dest)
    assert not dest.with_name("kernel.tmp").exists()


@pytest.mark.parametrize("make,message", [
    (lambda t: [kernel_deb(t, config=None)], "boot/config-9.9.9-test is missing from package linux-image-9.9.9-test "
                                             "9.9.9-1 (needed as kernel.config); the Debian package changed its file set"),
    (lambda t: [kernel_deb(t, config="CONFIG_BLK_DEV_DM=m\n")], "kernel 9.9.9-test is built without CONFIG_DM_VERITY"),
    (lambda t: [kernel_deb(t, package="linux-image-cloud")], "kernel.vmlinuz should come from package "
                                                             "linux-image-9.9.9-test"),
    (lambda t: [kernel_deb(t, "9.9.9-a"), kernel_deb(t, "9.9.9-b")], "expected exactly one boot/vmlinuz-<release>"),
])
def test_unpack_refuses_a_changed_kernel_package(tmp_path: Path, make, message: str) -> None:
    """A .deb whose file set changed fails with one line, and the previous unpack stays in place."""
    dest = tmp_path / "cache/kernel"
    good = tmp_path / "good"
    good.mkdir()
    assert unpack_cli("kernel", dest, [kernel_deb(good)]).returncode == 0
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    bad = tmp_path / "bad"
    bad.mkdir()
    r = unpack_cli("kernel", dest, make(bad))
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    assert not dest.with_name("kernel.tmp").exists()


def test_unpack_refuses_a_systemd_that_is_not_254(tmp_path: Path) -> None:
    r = unpack_cli("sd254", tmp_path / "sd254", sd254_debs(tmp_path, "255.1-1"))
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
    assert "systemd 255.1-1 is not systemd 254" in r.stderr
    r = unpack_cli("sd254", tmp_path / "sd254", sd254_debs(tmp_path)[:2])
    assert r.returncode == 1 and "sd254.libsystemd-shared should come from package libsystemd-shared" in r.stderr


def test_legacy_unpack_without_provenance_is_refetched(tmp_path: Path) -> None:
    """A kernel unpacked by the old setup.sh (no .teeform-debs.json) is not trusted: have() says fetch."""
    dest = tmp_path / "kernel"
    subprocess.run(["dpkg-deb", "-x", str(kernel_deb(tmp_path)), str(dest)], check=True)
    assert not L.have("kernel", dest)
    with pytest.raises(TeeformError, match="no provenance record"):
        L.read_provenance("kernel", dest)


@pytest.fixture()
def fake_checkout(tmp_path: Path) -> Path:
    """A checkout whose .cache holds synthetic kernel/sd254 unpacks (the dpkg inputs are this machine's)."""
    root = tmp_path / "repo"
    debs = tmp_path / "debs"
    debs.mkdir()
    L.unpack("kernel", root / ".cache/debian/kernel", [kernel_deb(debs)])
    L.unpack("sd254", root / ".cache/sd254", sd254_debs(debs))
    return root


def test_write_lock_then_load(fake_checkout: Path) -> None:
    pins = fake_checkout / "pins.json"
    pins.write_text("{}")
    assert L.write_lock(fake_checkout, ["busybox-static"], pins=pins) is True
    lock = L.load_lock(fake_checkout)
    assert lock.kernel_release == "9.9.9-test"
    assert lock.packages == {"busybox-static": inputs_lock().packages["busybox-static"]}
    k = lock.get("kernel.vmlinuz")
    assert (k.path, k.package, k.version, k.size, k.sha256) == (
        fake_checkout / ".cache/debian/kernel/boot/vmlinuz-9.9.9-test", "linux-image-9.9.9-test", "9.9.9-1", 6,
        sha256sum(k.path))
    assert lock.get("sd254.stub").upstream_major == 254
    raw = json.loads(L.lock_path(fake_checkout).read_text())
    assert raw["inputs"]["kernel.vmlinuz"]["path"] == ".cache/debian/kernel/boot/vmlinuz-9.9.9-test"  # relocatable
    # Current: not rewritten. A changed input: rewritten with the new digest.
    mtime = L.lock_path(fake_checkout).stat().st_mtime_ns
    assert L.write_lock(fake_checkout, ["busybox-static"], pins=pins) is False
    assert L.lock_path(fake_checkout).stat().st_mtime_ns == mtime
    k.path.write_bytes(b"kernel, rebuilt")
    assert L.write_lock(fake_checkout, ["busybox-static"], pins=pins) is True
    assert L.load_lock(fake_checkout).get("kernel.vmlinuz").sha256 == sha256sum(k.path)


def test_write_lock_fails_on_a_pin_and_keeps_the_old_record(fake_checkout: Path) -> None:
    pins = fake_checkout / "pins.json"
    pins.write_text(json.dumps({"sd254.stub": {"sha256": "0" * 64, "why": "TV-3"}}))
    with pytest.raises(TeeformError, match=r"linuxx64\.efi\.stub \(systemd-boot-efi 254\.99-1\) has sha256 [0-9a-f]{64}, "
                                           r"but TV-3 needs 0{64}") as ei:
        L.write_lock(fake_checkout, [], pins=pins)
    assert "\n" not in str(ei.value)
    assert not L.lock_path(fake_checkout).exists()
    pins.write_text("{}")
    L.write_lock(fake_checkout, [], pins=pins)
    before = L.lock_path(fake_checkout).read_bytes()
    (fake_checkout / ".cache/debian/kernel/boot/vmlinuz-9.9.9-test").write_bytes(b"changed")
    pins.write_text(json.dumps({"kernel.vmlinuz": {"version": "9.9.9-2", "why": "a vector"}}))
    with pytest.raises(TeeformError, match="has version 9.9.9-1, but a vector needs 9.9.9-2"):
        L.write_lock(fake_checkout, [], pins=pins)
    assert L.lock_path(fake_checkout).read_bytes() == before


def test_write_lock_names_a_missing_package(fake_checkout: Path) -> None:
    with pytest.raises(TeeformError, match="Debian package no-such-package-xyz is not installed"):
        L.write_lock(fake_checkout, ["no-such-package-xyz"], pins=fake_checkout / "none.json")
    shutil.rmtree(fake_checkout / ".cache/sd254/lib/systemd")
    with pytest.raises(TeeformError, match="lib/systemd/ukify is missing from package systemd 254.99-1"):
        L.write_lock(fake_checkout, [], pins=fake_checkout / "none.json")
