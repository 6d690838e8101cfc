"""The inputs lock: what ``scripts/setup.sh`` fetched, where it is, and its digests.

Tests, ``scripts/demo.sh``, ``scripts/vm-demo.sh`` and ``scripts/readme-examples.py`` take the Debian
kernel, the systemd stubs, ukify/systemd-measure 254, busybox-static and OVMF from this record instead
of guessing file names or versions. ``scripts/setup.sh`` writes it (``write``); everything else reads it
with :func:`load_lock`.

Record: ``.cache/inputs.lock.json`` (:data:`LOCK_NAME`), UTF-8 JSON written atomically::

    {
      "format": "teeform-inputs-lock/1",
      "written_by": "scripts/setup.sh",
      "kernel_release": "6.1.0-57-amd64",                 # uname -r of the unpacked kernel
      "packages": {"busybox-static": "1:1.35.0-4+deb12u1+b1", ...},   # dpkg-query of the apt packages
      "inputs": {
        "kernel.vmlinuz": {
          "package": "linux-image-6.1.0-57-amd64", "version": "6.1.158-1",
          "origin": "unpacked from linux-image-6.1.0-57-amd64_6.1.158-1_amd64.deb (sha256 ...)",
          "path": ".cache/debian/kernel/boot/vmlinuz-6.1.0-57-amd64",  # relative = under the checkout
          "kind": "file", "size": 8192000, "sha256": "..."
        },
        "kernel.modules": {..., "kind": "tree", "files": 3900, "sha256": "..."},
        ...
      },
      "fingerprint": "..."    # of paths, sizes, mtimes and package versions: a re-run of setup.sh
    }                         # rewrites the record only when this changes

A ``tree`` digest is the SHA-256 of the ``sha256sum`` listing of every regular file below the
directory, sorted by path: ``cd DIR && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum``
(paths start with ``./``; symlinks are listed as ``link -> target`` lines instead, see
:func:`tree_digest`).

Package names and versions come from ``dpkg-query`` (installed packages, checked with ``dpkg-query -S``
that the file belongs to the package) or ``dpkg-deb -f`` (the ``.deb`` files ``setup.sh`` unpacks
under ``.cache``, recorded at unpack time in ``<dir>/.teeform-debs.json``). The file sets each input
needs are the :data:`INPUTS` table; vector-defining inputs are checked against
``tests/vectors/pins.json`` (for example the sha256 of the stub the TV-2 vector was made with, see
tests/vectors/README.md).

CLI (``python -m teeform.inputs_lock``, used by the shell scripts)::

    unpack SOURCE DEST DEB...   unpack .debs into DEST via DEST.tmp, check the file set, record provenance
    have SOURCE DEST            exit 0 if DEST is a complete unpack with provenance, 1 otherwise
    write [--packages P...]     (re)write .cache/inputs.lock.json if its fingerprint changed
    path NAME                   print the absolute path of input NAME
    get FIELD                   print a top-level field (kernel_release) or NAME.field (busybox.version)

Every failure is one line on stderr and exit status 1 (2 for usage errors).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.fsutil import atomic_write_text, hash_file

FORMAT = "teeform-inputs-lock/1"
LOCK_NAME = "inputs.lock.json"
PROVENANCE = ".teeform-debs.json"
REPO = Path(__file__).resolve().parents[1]
HINT = "run scripts/setup.sh"

# Where the unpacked sources live, relative to the checkout.
SOURCES: dict[str, str] = {"kernel": ".cache/debian/kernel", "sd254": ".cache/sd254"}


@dataclass(frozen=True)
class InputSpec:
    """One input: its lock name, where it comes from and where it is.

    ``source`` is ``"dpkg"`` (an installed package: ``path`` is absolute) or a key of :data:`SOURCES`
    (unpacked ``.deb`` files: ``path`` is relative to that directory; ``{release}`` is the kernel release).
    """

    name: str
    source: str
    package: str
    path: str
    kind: str = "file"  # "file" or "tree"
    executable: bool = False


# The inputs tests and demos use. Package names are what Debian ships today; a moved file fails set-up.
INPUTS: tuple[InputSpec, ...] = (
    InputSpec("kernel.vmlinuz", "kernel", "linux-image-{release}", "boot/vmlinuz-{release}"),
    InputSpec("kernel.config", "kernel", "linux-image-{release}", "boot/config-{release}"),
    InputSpec("kernel.modules", "kernel", "linux-image-{release}", "lib/modules/{release}", kind="tree"),
    InputSpec("sd254.ukify", "sd254", "systemd", "lib/systemd/ukify", executable=True),
    InputSpec("sd254.systemd-measure", "sd254", "systemd", "lib/systemd/systemd-measure", executable=True),
    InputSpec("sd254.stub", "sd254", "systemd-boot-efi", "usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
    InputSpec("sd254.libsystemd-shared", "sd254", "libsystemd-shared", "usr/lib/x86_64-linux-gnu/systemd",
              kind="tree"),
    InputSpec("bookworm.stub", "dpkg", "systemd-boot-efi", "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
    InputSpec("bookworm.systemd-measure", "dpkg", "systemd", "/usr/lib/systemd/systemd-measure", executable=True),
    InputSpec("busybox", "dpkg", "busybox-static", "/bin/busybox", executable=True),
    InputSpec("ovmf.code", "dpkg", "ovmf", "/usr/share/OVMF/OVMF_CODE.fd"),
    InputSpec("ovmf.code-4m", "dpkg", "ovmf", "/usr/share/OVMF/OVMF_CODE_4M.fd"),
    InputSpec("ovmf.vars-4m", "dpkg", "ovmf", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
)

# Kernel options the VM image relies on (image_builder/pipelines/initrd.py loads them as modules).
KERNEL_OPTIONS = ("CONFIG_BLK_DEV_DM", "CONFIG_DM_VERITY", "CONFIG_EROFS_FS", "CONFIG_VIRTIO_BLK")


@dataclass(frozen=True)
class LockedInput:
    """One recorded input.

    Attributes:
        name: the lock name (``"kernel.vmlinuz"``).
        package: the Debian package that ships it.
        version: that package's version (``dpkg-query -W`` or ``dpkg-deb -f``).
        origin: ``"installed (dpkg)"`` or ``"unpacked from <deb> (sha256 <hex>)"``.
        path: absolute path on this machine.
        kind: ``"file"`` or ``"tree"`` (a directory, digest as in :func:`tree_digest`).
        size: bytes (file) or number of files (tree).
        sha256: lowercase hex digest of the file, or the tree digest.
    """

    name: str
    package: str
    version: str
    origin: str
    path: Path
    kind: str
    size: int
    sha256: str

    @property
    def upstream_major(self) -> int:
        """The leading number of the package version, ignoring an epoch (``"1:1.35.0-4"`` -> 1, ``"254.26-1"`` -> 254)."""
        m = re.match(r"^(?:\d+:)?(\d+)", self.version)
        if m is None:
            raise TeeformError(f"package version {self.version!r} of {self.package} has no leading number",
                               field=self.name)
        return int(m.group(1))


@dataclass(frozen=True)
class InputsLock:
    """The whole record (see the module docstring for the JSON)."""

    path: Path
    kernel_release: str
    packages: Mapping[str, str]
    inputs: Mapping[str, LockedInput]
    fingerprint: str

    def get(self, name: str) -> LockedInput:
        """Return input ``name``; a name the record lacks is a one-line :class:`TeeformError`."""
        try:
            return self.inputs[name]
        except KeyError:
            raise TeeformError(f"no input named {name!r} (have: {', '.join(sorted(self.inputs))})",
                               path=self.path, hint=HINT) from None

    def file(self, name: str) -> Path:
        """The absolute path of input ``name``."""
        return self.get(name).path


def lock_path(root: os.PathLike[str] | str | None = None) -> Path:
    """``<root>/.cache/inputs.lock.json`` (root defaults to this checkout)."""
    return Path(root if root is not None else REPO) / ".cache" / LOCK_NAME


def load_lock(root: os.PathLike[str] | str | None = None) -> InputsLock:
    """Read and check the record of checkout ``root``.

    Raises:
        TeeformError: the record is missing (hint: run scripts/setup.sh), malformed, or of another format.
    """
    from teeform.safeload import load_json_file, require_type

    path = lock_path(root)
    base = path.parent.parent
    if not path.is_file():
        raise TeeformError("inputs lock not found", path=path, hint=HINT)
    data = require_type(load_json_file(path, what="inputs lock"), dict, source=str(path), field="(top level)")
    if data.get("format") != FORMAT:
        raise TeeformError(f"format is {data.get('format')!r}, expected {FORMAT!r}", path=path, hint=HINT)
    src = str(path)
    release = require_type(data.get("kernel_release"), str, source=src, field="kernel_release")
    packages = require_type(data.get("packages"), dict, source=src, field="packages")
    raw_inputs = require_type(data.get("inputs"), dict, source=src, field="inputs")
    inputs: dict[str, LockedInput] = {}
    for name, entry in raw_inputs.items():
        require_type(entry, dict, source=src, field=f"inputs.{name}")
        vals: dict[str, Any] = {}
        for field in dataclasses.fields(LockedInput):
            if field.name == "name":
                continue
            want = int if field.name == "size" else str
            vals[field.name] = require_type(entry.get(field.name), want, source=src, field=f"inputs.{name}.{field.name}")
        if vals["kind"] not in ("file", "tree") or not re.fullmatch(r"[0-9a-f]{64}", vals["sha256"]):
            raise TeeformError("bad kind or sha256", path=path, field=f"inputs.{name}", hint=HINT)
        p = Path(vals["path"])
        vals["path"] = p if p.is_absolute() else base / p
        inputs[name] = LockedInput(name=name, **vals)
    for pkg, ver in packages.items():
        require_type(ver, str, source=src, field=f"packages.{pkg}")
    return InputsLock(path=path, kernel_release=release, packages=dict(packages), inputs=inputs,
                      fingerprint=str(data.get("fingerprint", "")))


# ------------------------------------------------------------------------------------- digests
def tree_digest(root: Path) -> tuple[int, str]:
    """Return ``(number of entries, sha256)`` of the ``sha256sum``-style listing of ``root``.

    Each regular file gives ``"<sha256>  ./<relpath>\\n"``, each symlink ``"<target>  ./<relpath> ->\\n"``
    (not followed); lines sorted by path in byte order. For a tree without symlinks this equals
    ``cd root && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum``.
    """
    entries: list[tuple[bytes, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, n)
            rel = "./" + os.path.relpath(full, root)
            if os.path.islink(full):
                entries.append((rel.encode(), f"{os.readlink(full)}  {rel} ->\n".encode()))
            elif os.path.isfile(full):
                entries.append((rel.encode(), f"{hash_file(full)['sha256']}  {rel}\n".encode()))
    entries.sort()
    h = hashlib.sha256()
    for _, line in entries:
        h.update(line)
    return len(entries), h.hexdigest()


def _stat_line(path: Path) -> str:
    """Cheap change detector for the fingerprint: size and mtime of a file, or of every file in a tree."""
    if path.is_dir():
        parts = []
        for dirpath, _, filenames in sorted(os.walk(path)):
            for n in sorted(filenames):
                st = os.lstat(os.path.join(dirpath, n))
                parts.append(f"{n}:{st.st_size}:{st.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


# ------------------------------------------------------------------------------------- Debian helpers
def _run(argv: Sequence[str]) -> str:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise TeeformError(f"{argv[0]} not found (a Debian machine with dpkg is required)") from None
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise TeeformError(f"{' '.join(argv)} failed: {last[-1] if last else f'exit {exc.returncode}'}") from None


def dpkg_version(package: str) -> str | None:
    """The installed version of ``package`` (``dpkg-query -W``), or None if it is not installed."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}\\n", package],
                             capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        raise TeeformError("dpkg-query not found (a Debian machine is required)") from None
    for line in out.splitlines():
        status, _, version = line.partition(" ")
        if status == "installed":
            return version
    return None


def _usr_aliases(path: str) -> list[str]:
    """``path`` and its merged-/usr twin (Debian 12: ``/lib`` -> ``usr/lib``; dpkg knows one of the two)."""
    for top in ("bin", "sbin", "lib", "lib64"):
        if path.startswith(f"/usr/{top}/"):
            return [path, path.removeprefix("/usr")]
        if path.startswith(f"/{top}/"):
            return [path, "/usr" + path]
    return [path]


def dpkg_owner(path: str) -> set[str]:
    """The packages (without ``:arch``) that ``dpkg-query -S`` says ship ``path`` (or its merged-/usr twin)."""
    names = _usr_aliases(path)
    out = subprocess.run(["dpkg-query", "-S", *names], capture_output=True, text=True, check=False).stdout
    owners: set[str] = set()
    for line in out.splitlines():
        pkgs, sep, p = line.rpartition(": ")
        if sep and p in names:
            owners.update(x.strip().split(":")[0] for x in pkgs.split(","))
    return owners


def _specs(source: str) -> list[InputSpec]:
    return [s for s in INPUTS if s.source == source]


def _kernel_release(tree: Path, what: str) -> str:
    """The release of the unpacked kernel in ``tree``: exactly one ``boot/vmlinuz-<release>``."""
    found = sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))
    if len(found) != 1:
        raise TeeformError(f"expected exactly one boot/vmlinuz-<release>, found {len(found)} ({', '.join(found)})",
                           path=what)
    return found[0]


def check_tree(source: str, tree: Path, packages: Mapping[str, str], what: str) -> str:
    """Check that ``tree`` (unpacked ``source``) holds every file :data:`INPUTS` needs; return the kernel release.

    ``packages`` maps the unpacked package names to versions. Raises a one-line :class:`TeeformError`
    naming the first missing piece.
    """
    release = _kernel_release(tree, what) if source == "kernel" else ""
    for spec in _specs(source):
        pkg = spec.package.format(release=release)
        if pkg not in packages:
            raise TeeformError(f"{spec.name} should come from package {pkg}, but the unpacked packages are "
                               f"{', '.join(sorted(packages))}", path=what)
        rel = spec.path.format(release=release)
        p = tree / rel
        ok = p.is_dir() if spec.kind == "tree" else p.is_file()
        if not ok or (spec.executable and not os.access(p, os.X_OK)):
            raise TeeformError(f"{rel} is missing from package {pkg} {packages[pkg]} (needed as {spec.name}); "
                               "the Debian package changed its file set", path=what)
    if source == "kernel":
        config = (tree / f"boot/config-{release}").read_text(errors="replace")
        for opt in KERNEL_OPTIONS:
            if not re.search(rf"^{opt}=[ym]$", config, re.M):
                raise TeeformError(f"kernel {release} is built without {opt} (the VM image needs it)", path=what)
        if not any((tree / f"lib/modules/{release}/kernel").rglob("dm-verity.ko*")):
            raise TeeformError(f"kernel {release} ships no dm-verity module", path=what)
    if source == "sd254":
        for pkg in ("systemd", "systemd-boot-efi", "libsystemd-shared"):
            if not packages.get(pkg, "").startswith("254."):
                raise TeeformError(f"{pkg} {packages.get(pkg)} is not systemd 254 (the 254 oracles and TV-3 "
                                   "need 254.x from bookworm-backports)", path=what)
    return release


def unpack(source: str, dest: Path, debs: Sequence[Path]) -> None:
    """Unpack ``debs`` into ``dest`` (via ``dest.tmp``, renamed only once the file set checks out).

    Records ``[{package, version, deb, sha256}]`` in ``dest/.teeform-debs.json``.
    """
    if source not in SOURCES:
        raise TeeformError(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
    if not debs:
        raise TeeformError(f"no .deb files given for {source}")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    record = []
    try:
        for deb in debs:
            fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"])
            meta = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
            if "Package" not in meta or "Version" not in meta:
                raise TeeformError("not a Debian package (no Package/Version field)", path=deb)
            _run(["dpkg-deb", "-x", str(deb), str(tmp)])
            record.append({"package": meta["Package"], "version": meta["Version"], "deb": deb.name,
                           "sha256": hash_file(deb)["sha256"]})
        check_tree(source, tmp, {r["package"]: r["version"] for r in record}, f"{source} .debs ({debs[0].name}...)")
        atomic_write_text(tmp / PROVENANCE, json.dumps(record, indent=1) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_provenance(source: str, dest: Path) -> list[dict[str, str]]:
    """The ``.teeform-debs.json`` of an unpacked source; a missing or bad record is a :class:`TeeformError`."""
    from teeform.safeload import load_json_file

    rec = dest / PROVENANCE
    if not rec.is_file():
        raise TeeformError(f"{dest} has no provenance record ({PROVENANCE}); it was unpacked by an older setup.sh",
                           hint=HINT)
    data = load_json_file(rec, what="provenance record")
    if not isinstance(data, list) or not all(isinstance(r, dict) and {"package", "version", "deb", "sha256"} <= set(r)
                                             for r in data):
        raise TeeformError("malformed provenance record", path=rec, hint=HINT)
    return data


def have(source: str, dest: Path) -> bool:
    """True if ``dest`` is a complete unpack of ``source`` with a provenance record (set-up keeps it)."""
    try:
        prov = read_provenance(source, dest)
        check_tree(source, dest, {r["package"]: r["version"] for r in prov}, str(dest))
    except TeeformError:
        return False
    return True


# ------------------------------------------------------------------------------------- writing
def _entries(root: Path, packages: Iterable[str]) -> tuple[str, dict[str, str], list[tuple[InputSpec, dict[str, Any]]]]:
    """Resolve every spec to (spec, partial entry without digests), plus the kernel release and packages."""
    pkg_versions: dict[str, str] = {}
    for p in packages:
        v = dpkg_version(p)
        if v is None:
            raise TeeformError(f"Debian package {p} is not installed", hint=HINT)
        pkg_versions[p] = v
    release = ""
    resolved: list[tuple[InputSpec, dict[str, Any]]] = []
    provs = {}
    for source, rel_dir in SOURCES.items():
        d = root / rel_dir
        prov = read_provenance(source, d)
        versions = {r["package"]: r["version"] for r in prov}
        r = check_tree(source, d, versions, str(d))
        release = r or release
        provs[source] = (d, prov, versions)
    for spec in INPUTS:
        if spec.source == "dpkg":
            path = Path(spec.path)
            if not (path.is_dir() if spec.kind == "tree" else path.is_file()):
                raise TeeformError(f"{spec.name}: {path} is missing (package {spec.package})", hint=HINT)
            if spec.package not in dpkg_owner(spec.path):
                raise TeeformError(f"{spec.name}: {path} does not belong to package {spec.package} "
                                   f"(dpkg-query -S: {', '.join(sorted(dpkg_owner(spec.path))) or 'no package'})")
            version = dpkg_version(spec.package)
            if version is None:
                raise TeeformError(f"{spec.name}: package {spec.package} is not installed", hint=HINT)
            entry = {"package": spec.package, "version": version, "origin": "installed (dpkg)", "path": str(path)}
        else:
            d, prov, versions = provs[spec.source]
            pkg = spec.package.format(release=release)
            deb = next(r for r in prov if r["package"] == pkg)
            path = d / spec.path.format(release=release)
            entry = {"package": pkg, "version": versions[pkg],
                     "origin": f"unpacked from {deb['deb']} (sha256 {deb['sha256']})",
                     "path": str(path.relative_to(root))}
        entry["kind"] = spec.kind
        resolved.append((spec, entry))
    return release, pkg_versions, resolved


def _fingerprint(root: Path, release: str, packages: Mapping[str, str],
                 resolved: Sequence[tuple[InputSpec, Mapping[str, Any]]]) -> str:
    lines = [FORMAT, release, json.dumps(sorted(packages.items()))]
    for spec, entry in resolved:
        p = Path(entry["path"])
        lines.append(f"{spec!r} {entry['version']} {entry['origin']} {_stat_line(p if p.is_absolute() else root / p)}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def check_pins(lock: Mapping[str, Any], pins_file: Path) -> None:
    """Compare the record with the pins of published vectors (``{"<input>": {"sha256"|"version": ..., "why": ...}}``)."""
    from teeform.safeload import load_json_file

    if not pins_file.is_file():
        return
    pins = load_json_file(pins_file, what="input pins")
    for name, pin in pins.items():
        if name.startswith("_"):
            continue
        entry = lock["inputs"].get(name)
        if entry is None:
            raise TeeformError(f"pins name unknown input {name!r}", path=pins_file)
        for key in ("sha256", "version"):
            if key in pin and entry[key] != pin[key]:
                raise TeeformError(f"{entry['path']} ({entry['package']} {entry['version']}) has {key} {entry[key]}, "
                                   f"but {pin['why']} needs {pin[key]} ({pins_file.name}); Debian changed this input",
                                   hint="update the vectors and their pins deliberately")


def write_lock(root: os.PathLike[str] | str | None = None, packages: Iterable[str] = (), *,
               pins: os.PathLike[str] | str | None = None, force: bool = False) -> bool:
    """Compute the record of checkout ``root`` and write it atomically; return False if it was current.

    The record is rewritten when it is missing, unreadable, or its fingerprint (paths, sizes, mtimes,
    versions) differs. Pins (default ``<root>/tests/vectors/pins.json``) are checked every time.
    """
    base = Path(root if root is not None else REPO).resolve()
    release, pkg_versions, resolved = _entries(base, packages)
    fp = _fingerprint(base, release, pkg_versions, resolved)
    pins_file = Path(pins) if pins is not None else base / "tests" / "vectors" / "pins.json"
    target = lock_path(base)
    if not force:
        try:
            current = load_lock(base)
        except TeeformError:
            current = None
        if current is not None and current.fingerprint == fp:
            check_pins(json.loads(target.read_text()), pins_file)
            return False
    inputs: dict[str, dict[str, Any]] = {}
    for spec, entry in resolved:
        p = Path(entry["path"])
        full = p if p.is_absolute() else base / p
        if spec.kind == "tree":
            size, digest = tree_digest(full)
        else:
            size, digest = full.stat().st_size, hash_file(full)["sha256"]
        inputs[spec.name] = {**entry, "size": size, "sha256": digest}
    record = {"format": FORMAT, "written_by": "scripts/setup.sh", "kernel_release": release,
              "packages": dict(sorted(pkg_versions.items())), "inputs": inputs, "fingerprint": fp}
    check_pins(record, pins_file)
    atomic_write_text(target, json.dumps(record, indent=2) + "\n")
    return True


# ------------------------------------------------------------------------------------- CLI
def _get(lock: InputsLock, field: str) -> str:
    if field == "kernel_release":
        return lock.kernel_release
    name, _, attr = field.rpartition(".")
    if name in lock.inputs and attr in {f.name for f in dataclasses.fields(LockedInput)}:
        return str(getattr(lock.inputs[name], attr))
    if field in lock.packages:
        return lock.packages[field]
    raise TeeformError(f"no field {field!r} (kernel_release, <input>.<package|version|path|sha256|size>, "
                       "or an apt package name)", path=lock.path)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m teeform.inputs_lock", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("unpack")
    p.add_argument("source")
    p.add_argument("dest", type=Path)
    p.add_argument("debs", type=Path, nargs="+")
    p = sub.add_parser("have")
    p.add_argument("source")
    p.add_argument("dest", type=Path)
    p = sub.add_parser("write")
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--packages", nargs="*", default=[])
    p = sub.add_parser("path")
    p.add_argument("name")
    p = sub.add_parser("get")
    p.add_argument("field")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "unpack":
            unpack(args.source, args.dest, args.debs)
        elif args.cmd == "have":
            return 0 if have(args.source, args.dest) else 1
        elif args.cmd == "write":
            if write_lock(args.root, args.packages, force=args.force):
                print(f"wrote {lock_path(args.root)}", file=sys.stderr)
        elif args.cmd == "path":
            print(load_lock().file(args.name))
        else:
            print(_get(load_lock(), args.field))
    except TeeformError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
