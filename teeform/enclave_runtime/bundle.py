"""Reproducible archives of the runtime's own source files.

* :func:`parent_bundle`: the parent side (:data:`PARENT_FILES`, standard library only) as a
  ``tar.gz`` that the enclave host's user data unpacks under ``/usr/local/lib/teeform-parent``
  (``components/aws/enclave_host.py``). EC2 user data is limited to 16 KiB (EC2 User Guide, "Run
  commands when you launch an EC2 instance with user data input"), so docstrings are dropped from
  this copy (:func:`strip_docstrings`; the code is otherwise unchanged).
* :func:`enclave_files`: the enclave side (:data:`ENCLAVE_FILES`, which need ``cryptography``,
  ``cbor2``, ``asn1crypto``, ``botocore`` and ``PyYAML`` in the image), verbatim, for the OCI layer
  that ``teeform build eif --runtime`` adds (``image_builder/pipelines/runtime_layer.py``).

:func:`deterministic_tar` writes entries sorted, owned by 0:0, with one fixed mtime, in the POSIX
ustar format, so the same files give the same bytes (and the same PCR2).
"""

from __future__ import annotations

import ast
import functools
import gzip
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

import teeform

PACKAGE_ROOT = Path(teeform.__file__).resolve().parent.parent
#: Files the parent side needs (paths relative to the repository root).
PARENT_FILES = (
    "teeform/__init__.py",
    "teeform/errors.py",
    "teeform/enclave_runtime/__init__.py",
    "teeform/enclave_runtime/transport.py",
    "teeform/enclave_runtime/wire.py",
    "teeform/enclave_runtime/parent.py",
)
#: Files the enclave side needs: the runtime plus the teeform modules it reuses (sealed-file format,
#: attestation parsing, CMS ``CiphertextForRecipient``).
ENCLAVE_FILES = (
    "teeform/__init__.py",
    "teeform/errors.py",
    "teeform/safeload.py",
    "teeform/seal.py",
    "teeform/nitro/__init__.py",
    "teeform/nitro/attestation.py",
    "teeform/nitro/cbor_guard.py",
    "teeform/nitro/kms_recipient.py",
    "teeform/enclave_runtime/__init__.py",
    "teeform/enclave_runtime/__main__.py",
    "teeform/enclave_runtime/bridge.py",
    "teeform/enclave_runtime/enclave.py",
    "teeform/enclave_runtime/nsm.py",
    "teeform/enclave_runtime/transport.py",
    "teeform/enclave_runtime/wire.py",
)


def strip_docstrings(source: str) -> str:
    """``source`` with module/class/function docstrings removed and comments dropped (``ast.unparse``)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def deterministic_tar(files: Iterable[tuple[str, bytes, int]], *, mtime: int = 0, prefix: str = "") -> bytes:
    """An uncompressed ustar archive of ``(path, data, mode)`` plus every parent directory (0755),
    sorted by path, uid/gid 0, names empty, every mtime ``mtime``."""
    entries = {f"{prefix}{p}": (d, m) for p, d, m in files}
    dirs: set[str] = set()
    for p in entries:
        parts = p.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(dirs | set(entries)):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            if name in entries:
                data, mode = entries[name]
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    return out.getvalue()


def _read(rel: str) -> bytes:
    return (PACKAGE_ROOT / rel).read_bytes()


def parent_bundle() -> bytes:
    """``tar.gz`` of :data:`PARENT_FILES` (docstrings stripped), gzip mtime 0: pure.

    The files are read on every call, but the stripping and compressing (about 40 ms) run once
    per distinct content (:func:`_parent_bundle`, cached): a preview renders the user data of every
    enclave host, and 100 targets used to spend 4 s re-parsing the same six files."""
    return _parent_bundle(tuple(_read(rel) for rel in PARENT_FILES))


@functools.lru_cache(maxsize=4)
def _parent_bundle(sources: tuple[bytes, ...]) -> bytes:
    files = [(rel, strip_docstrings(raw.decode("utf-8")).encode("utf-8"), 0o644)
             for rel, raw in zip(PARENT_FILES, sources, strict=True)]
    return gzip.compress(deterministic_tar(files), compresslevel=9, mtime=0)


def enclave_files() -> list[tuple[str, bytes, int]]:
    """``(path, bytes, mode)`` of :data:`ENCLAVE_FILES`, verbatim, mode 0644."""
    return [(rel, _read(rel), 0o644) for rel in ENCLAVE_FILES]
