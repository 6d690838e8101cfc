"""A TCP -> vsock bridge: how the enclave reaches KMS through the parent's ``vsock-proxy``.

An enclave has no network interface, only vsock (eif-nitro.md §6.1). The parent runs
``vsock-proxy 8000 kms.<region>.amazonaws.com 443`` (§6.4), which forwards each vsock connection on
port 8000 to KMS over TCP. Inside the enclave this bridge listens on ``127.0.0.1:<port>`` and
forwards each TCP connection to ``vsock:3:8000``; with ``kms.<region>.amazonaws.com`` resolved to
127.0.0.1 (``/etc/hosts``, :func:`map_host`), the KMS client's TLS session runs end to end between
the enclave and KMS (SNI and certificate checked against the real host name), so the parent and its
proxy only ever see ciphertext.

The bridge copies bytes; it never parses them. One thread per direction per connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from pathlib import Path

from teeform.enclave_runtime.transport import Address, bound_address
from teeform.errors import TeeformError


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Bridge:
    """Forward every connection accepted on ``listen`` to ``upstream``.

    Use as a context manager, or :meth:`start` / :meth:`stop`. ``address`` is the bound listen
    address (the real port when ``listen`` asked for port 0).
    """

    def __init__(self, listen: Address, upstream: Address) -> None:
        self.upstream = upstream
        self._sock = listen.listen()
        self.address = bound_address(self._sock, listen)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()

    def start(self) -> Bridge:
        """Start the accept loop on a daemon thread."""
        t = threading.Thread(target=self._accept_loop, name="teeform-bridge", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            try:
                up = self.upstream.connect(30.0)
            except TeeformError:
                conn.close()
                continue
            conn.settimeout(None)
            up.settimeout(None)
            self._conns += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                t = threading.Thread(target=_pump, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self) -> None:
        """Close the listener and every forwarded connection."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def map_host(hosts_file: Path, host: str, ip: str = "127.0.0.1") -> bool:
    """Make ``host`` resolve to ``ip`` through ``hosts_file`` (``hosts(5)``: ``IP name`` lines).

    A no-op (returns False) when a line already maps ``host`` to ``ip``; else the line is appended
    by writing a new file next to it and renaming it over (the old content kept).

    Raises:
        TeeformError: the file cannot be read or written.
    """
    try:
        text = hosts_file.read_text("utf-8") if hosts_file.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise TeeformError(f"cannot read: {exc}", path=hosts_file) from None
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] == ip and host in words[1:]:
            return False
    new = text + ("" if not text or text.endswith("\n") else "\n") + f"{ip} {host}\n"
    try:
        hosts_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".hosts.", dir=hosts_file.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
        os.chmod(tmp, 0o644)
        os.replace(tmp, hosts_file)
    except OSError as exc:
        raise TeeformError(f"cannot write: {exc.strerror or exc}", path=hosts_file) from None
    return True


def ensure_loopback_up(name: str = "lo") -> bool:
    """Bring the loopback interface up if it is down (a fresh enclave's ``lo`` is down; the bridge
    listens on 127.0.0.1). Uses ``SIOCGIFFLAGS``/``SIOCSIFFLAGS`` (``netdevice(7)``: ``struct ifreq`` =
    16-byte name + ``short ifr_flags``; ``IFF_UP`` = 1). Linux gives ``lo`` 127.0.0.1/8 when it comes
    up. Returns True when it had to bring it up.

    Raises:
        TeeformError: the interface is down and cannot be brought up (not root).
    """
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh22x", name.encode(), 0)
        try:
            flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        except OSError as exc:
            raise TeeformError(f"cannot read the flags of interface {name}: {exc.strerror}") from None
        if flags & iff_up:
            return False
        try:
            fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sh22x", name.encode(), flags | iff_up))
        except OSError as exc:
            raise TeeformError(f"cannot bring interface {name} up: {exc.strerror}",
                               hint="the runtime must run as root (the Nitro init runs the command as root)") from None
    return True
