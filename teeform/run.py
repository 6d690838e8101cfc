"""The one choke point for running external programs (veritysetup, mkfs.erofs, qemu-img, ...).

* argv lists only, never a shell;
* the tool is looked up in ``$TEEFORM_TOOLS_DIR`` (colon-separated directories) before ``$PATH``;
* the copy-pasteable command is echoed to stderr when ``TEEFORM_DEBUG`` is set;
* a missing tool raises :class:`~teeform.errors.ToolMissingError` naming the Debian package;
* a non-zero exit raises :class:`~teeform.errors.TeeformError` with the tail of stderr.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Literal, overload

from teeform.errors import TeeformError, ToolMissingError

#: Which Debian package provides a tool, for the "not installed" hint.
DEBIAN_PACKAGE: dict[str, str] = {
    "veritysetup": "cryptsetup-bin",
    "mkfs.erofs": "erofs-utils",
    "mksquashfs": "squashfs-tools",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mmd": "mtools",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "swtpm": "swtpm",
    "pesign": "pesign",
    "osslsigncode": "osslsigncode",
    "sbsign": "sbsigntool",
    "systemd-measure": "systemd",
    "sfdisk": "fdisk",
    "objdump": "binutils",
}

SYSTEM_TOOL_DIRS = ("/usr/lib/systemd", "/lib/systemd", "/usr/sbin", "/sbin")


@overload
def find_tool(name: str, *, required: Literal[True] = True, reason: str = "") -> str: ...
@overload
def find_tool(name: str, *, required: bool, reason: str = "") -> str | None: ...
def find_tool(name: str, *, required: bool = True, reason: str = "") -> str | None:
    """Return the absolute path of tool ``name``.

    Search order: each directory in ``$TEEFORM_TOOLS_DIR``, then ``$PATH``, then
    :data:`SYSTEM_TOOL_DIRS` (where Debian keeps ``systemd-measure`` and ``veritysetup``).

    Raises:
        ToolMissingError: the tool is absent and ``required`` is true (hint names the package).
    """
    for d in filter(None, os.environ.get("TEEFORM_TOOLS_DIR", "").split(":")):
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    found = shutil.which(name) or shutil.which(name, path=":".join(SYSTEM_TOOL_DIRS))
    if found or not required:
        return found
    pkg = DEBIAN_PACKAGE.get(name, name)
    why = f" which is required to {reason}" if reason else ""
    raise ToolMissingError(
        f"could not find '{name}'{why}",
        hint=f"install it with `apt-get install {pkg}` (scripts/setup.sh installs every tool teeform uses)",
    )


def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    capture: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (argv[0] resolved with :func:`find_tool`) and check its exit status.

    Returns:
        the completed process (stdout/stderr as bytes when ``capture``).

    Raises:
        ToolMissingError: argv[0] is not installed.
        TeeformError: non-zero exit, signal or timeout; the message quotes the command and stderr.
    """
    argv = [find_tool(argv[0]) or argv[0], *argv[1:]]
    if os.environ.get("TEEFORM_DEBUG"):
        print("+", shlex.join(argv), file=sys.stderr)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            argv, input=input, env=full_env, cwd=cwd, timeout=timeout,
            stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise TeeformError(f"`{shlex.join(argv)}` timed out after {timeout} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or b"").decode("utf-8", "replace").strip().splitlines()[-5:]
        raise TeeformError(
            f"`{shlex.join(argv)}` failed with exit status {proc.returncode}" + (": " + " | ".join(tail) if tail else "")
        )
    return proc
