"""Stream-socket addresses: ``vsock:CID:PORT``, ``tcp:HOST:PORT``, ``unix:PATH``.

vsock (``AF_VSOCK``, Linux ``vsock(7)``) is how a Nitro Enclave reaches its parent (CID 3,
eif-nitro.md §6.1). The parent listens on ``vsock:any:PORT`` (``VMADDR_CID_ANY`` = 0xFFFFFFFF,
``linux/vm_sockets.h``). ``tcp`` and ``unix`` exist so the same code runs on one machine whose
kernel lacks ``vsock_loopback`` (tests, local emulation); nothing else differs between them.

Errors are :class:`teeform.errors.TeeformError` naming the address and the option (``field``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from teeform.errors import TeeformError

#: ``VMADDR_CID_ANY`` (``linux/vm_sockets.h``): listen on every CID.
VMADDR_CID_ANY = 0xFFFFFFFF
#: ``VMADDR_CID_LOCAL`` (``linux/vm_sockets.h``, Linux >= 5.6): this host through ``vsock_loopback``.
VMADDR_CID_LOCAL = 1


@dataclass(frozen=True)
class Address:
    """A stream endpoint.

    Attributes:
        kind: ``"vsock"``, ``"tcp"`` or ``"unix"``.
        host: vsock CID (int), TCP host (str) or the unix socket path.
        port: vsock/TCP port (0 for unix).
    """

    kind: str
    host: int | str
    port: int = 0

    @classmethod
    def parse(cls, text: str, *, field: str = "address") -> Address:
        """Parse ``vsock:CID:PORT`` (CID a number or ``any``), ``tcp:HOST:PORT`` or ``unix:PATH``.

        Raises:
            TeeformError: any other shape, a port outside 1..65535 (0 allowed for tcp: any free
                port), a CID outside 0..0xFFFFFFFF.
        """
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls("unix", rest)
        if kind not in ("vsock", "tcp") or ":" not in rest:
            raise TeeformError(f"not an address: {text!r} (use vsock:CID:PORT, tcp:HOST:PORT or unix:PATH)", field=field)
        host, _, port_text = rest.rpartition(":")
        try:
            port = int(port_text, 10)
        except ValueError:
            raise TeeformError(f"bad port in {text!r}", field=field) from None
        if not (0 if kind == "tcp" else 1) <= port <= (0xFFFFFFFF if kind == "vsock" else 65535):
            raise TeeformError(f"port out of range in {text!r}", field=field)
        if kind == "tcp":
            if not host:
                raise TeeformError(f"no host in {text!r}", field=field)
            return cls("tcp", host.strip("[]"), port)
        if host == "any":
            return cls("vsock", VMADDR_CID_ANY, port)
        try:
            cid = int(host, 10)
        except ValueError:
            raise TeeformError(f"bad vsock CID in {text!r} (a number or 'any')", field=field) from None
        if not 0 <= cid <= 0xFFFFFFFF:
            raise TeeformError(f"vsock CID out of range in {text!r}", field=field)
        return cls("vsock", cid, port)

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.host}"
        host = "any" if self.kind == "vsock" and self.host == VMADDR_CID_ANY else self.host
        return f"{self.kind}:{host}:{self.port}"

    def _family(self) -> int:
        if self.kind == "vsock":
            family = getattr(socket, "AF_VSOCK", None)
            if family is None:
                raise TeeformError(f"{self}: this Python/OS has no AF_VSOCK sockets")
            return int(family)
        if self.kind == "unix":
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in str(self.host) else socket.AF_INET

    def _sockaddr(self) -> str | tuple[Any, ...]:
        return str(self.host) if self.kind == "unix" else (self.host, self.port)

    def connect(self, timeout: float | None = 10.0) -> socket.socket:
        """A connected stream socket.

        Raises:
            TeeformError: the connection failed (``OSError`` text included).
        """
        sock = socket.socket(self._family(), socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self._sockaddr())
        except OSError as exc:
            sock.close()
            raise TeeformError(f"cannot connect to {self}: {exc.strerror or exc}") from None
        return sock

    def listen(self, backlog: int = 16) -> socket.socket:
        """A listening stream socket bound to this address (``SO_REUSEADDR`` for tcp).

        Raises:
            TeeformError: the bind failed.
        """
        sock = socket.socket(self._family(), socket.SOCK_STREAM)
        try:
            if self.kind == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self._sockaddr())
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise TeeformError(f"cannot listen on {self}: {exc.strerror or exc}") from None
        return sock


def bound_address(sock: socket.socket, template: Address) -> Address:
    """The address ``sock`` is actually bound to (resolves ``tcp:HOST:0`` to the chosen port)."""
    if template.kind == "unix":
        return template
    name = sock.getsockname()
    return Address(template.kind, template.host, int(name[1]))


def vsock_loopback_available() -> bool:
    """True when this kernel can connect vsock to itself (``vsock_loopback``, CID 1)."""
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:
        return False
    try:
        with socket.socket(family, socket.SOCK_STREAM) as srv:
            srv.bind((VMADDR_CID_LOCAL, socket.VMADDR_PORT_ANY if hasattr(socket, "VMADDR_PORT_ANY") else 0xFFFFFFFF))
            srv.listen(1)
            port = srv.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as cli:
                cli.settimeout(2)
                cli.connect((VMADDR_CID_LOCAL, port))
        return True
    except OSError:
        return False
