"""Ask the Nitro Secure Module for an attestation document.

No maintained NSM library is on PyPI (``aws-nsm-interface`` 1.0.0 dates from 2020 and depends on
``ioctl-opt``), so this module speaks the documented protocol itself:

* **Request / response** (``aws/aws-nitro-enclaves-nsm-api`` ``src/api/mod.rs``, eif-nitro.md §4.1):
  CBOR, serde's externally tagged enums. The request is
  ``{"Attestation": {"user_data": bstr|null, "nonce": bstr|null, "public_key": bstr|null}}`` (at most
  :data:`NSM_REQUEST_MAX_SIZE` bytes); the reply is ``{"Attestation": {"document": bstr}}`` (at most
  :data:`NSM_RESPONSE_MAX_SIZE` bytes) or ``{"Error": "<ErrorCode>"}`` (``InvalidArgument``,
  ``InvalidIndex``, ``InvalidResponse``, ``ReadOnlyIndex``, ``InvalidOperation``, ``BufferTooSmall``,
  ``InputTooLarge``, ``InternalError``).
* **Transport** (Linux ``include/uapi/linux/nsm.h``; the same layout as the NSM API's
  ``src/driver/mod.rs``): ``ioctl(fd("/dev/nsm"), NSM_IOCTL_RAW, struct nsm_raw *)`` where
  ``struct nsm_raw { struct nsm_iovec request, response; }`` and
  ``struct nsm_iovec { __u64 addr; __u64 len; }`` (native byte order); the driver writes the reply
  into the response buffer and its length into ``response.len``.
  ``NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw)`` = ``0xC0200A00`` (``_IOC`` encoding of
  ``asm-generic/ioctl.h``: dir 3 << 30 | size 32 << 16 | type 0x0A << 8 | nr 0).

:class:`SocketNsm` carries the same CBOR over a stream socket (4-byte big-endian length, then the
message, each way) so a test responder or emulator can stand in for ``/dev/nsm``.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable
from typing import Any, Protocol

from teeform.enclave_runtime.transport import Address
from teeform.errors import TeeformError

NSM_MAGIC = 0x0A
NSM_REQUEST_MAX_SIZE = 0x1000
NSM_RESPONSE_MAX_SIZE = 0x3000
_IOC_READ, _IOC_WRITE = 2, 1
_NSM_RAW = struct.Struct("=QQQQ")  # request.addr, request.len, response.addr, response.len


def ioc(direction: int, type_: int, nr: int, size: int) -> int:
    """``_IOC(dir, type, nr, size)`` of ``asm-generic/ioctl.h`` (x86-64 and arm64)."""
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


#: ``_IOWR(NSM_MAGIC, 0, struct nsm_raw)`` (module docstring).
NSM_IOCTL_RAW = ioc(_IOC_READ | _IOC_WRITE, NSM_MAGIC, 0, _NSM_RAW.size)


class NsmTransport(Protocol):
    """Sends one CBOR request and returns the CBOR reply."""

    def exchange(self, request: bytes) -> bytes:
        """Raises TeeformError on transport failure."""
        ...


def attestation_request(public_key: bytes | None, user_data: bytes | None = None, nonce: bytes | None = None) -> bytes:
    """CBOR of the ``Attestation`` request (module docstring).

    Raises:
        TeeformError: the encoding is over :data:`NSM_REQUEST_MAX_SIZE`.
    """
    import cbor2

    data = cbor2.dumps({"Attestation": {"user_data": user_data, "nonce": nonce, "public_key": public_key}})
    if len(data) > NSM_REQUEST_MAX_SIZE:
        raise TeeformError(f"NSM request of {len(data)} bytes is over the {NSM_REQUEST_MAX_SIZE}-byte limit")
    return data


def parse_attestation_response(data: bytes) -> bytes:
    """The ``document`` of an ``Attestation`` reply.

    Raises:
        TeeformError: an ``Error`` reply (naming the code), not CBOR, or another shape.
    """
    import cbor2

    if len(data) > NSM_RESPONSE_MAX_SIZE:
        raise TeeformError(f"NSM reply of {len(data)} bytes is over the {NSM_RESPONSE_MAX_SIZE}-byte limit")
    try:
        reply: Any = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise TeeformError(f"the NSM reply is not CBOR: {exc}") from None
    if isinstance(reply, dict) and "Error" in reply:
        raise TeeformError(f"the NSM refused the attestation request: {reply['Error']!s:.80}")
    body = reply.get("Attestation") if isinstance(reply, dict) else None
    doc = body.get("document") if isinstance(body, dict) else None
    if not isinstance(doc, bytes) or not doc:
        raise TeeformError("the NSM reply is not {\"Attestation\": {\"document\": bstr}}")
    return doc


class DeviceNsm:
    """``/dev/nsm`` through ``NSM_IOCTL_RAW`` (module docstring)."""

    def __init__(self, path: str = "/dev/nsm") -> None:
        self.path = path

    def exchange(self, request: bytes) -> bytes:
        """One ioctl round trip.

        Raises:
            TeeformError: the device cannot be opened, or the ioctl fails (``ENOTTY`` when
                ``path`` is not the NSM device).
        """
        import fcntl

        req = ctypes.create_string_buffer(request, len(request))
        resp = ctypes.create_string_buffer(NSM_RESPONSE_MAX_SIZE)
        msg = bytearray(_NSM_RAW.pack(ctypes.addressof(req), len(request), ctypes.addressof(resp), NSM_RESPONSE_MAX_SIZE))
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise TeeformError(f"cannot open the Nitro Secure Module: {exc.strerror}", path=self.path,
                               hint="run inside a Nitro Enclave whose image loads nsm.ko") from None
        try:
            fcntl.ioctl(fd, NSM_IOCTL_RAW, msg, True)
        except OSError as exc:
            raise TeeformError(f"the NSM ioctl failed: {exc.strerror}", path=self.path) from None
        finally:
            os.close(fd)
        length = _NSM_RAW.unpack(bytes(msg))[3]
        if length > NSM_RESPONSE_MAX_SIZE:
            raise TeeformError(f"the NSM reported a {length}-byte reply, over its buffer", path=self.path)
        return resp.raw[:length]


class SocketNsm:
    """The NSM protocol over a stream socket (4-byte big-endian length + CBOR, each way): for test
    responders and emulators standing in for ``/dev/nsm``."""

    def __init__(self, address: Address) -> None:
        self.address = address

    def exchange(self, request: bytes) -> bytes:
        """Raises TeeformError on connection failure or a malformed/oversized reply."""
        with self.address.connect(10.0) as sock:
            sock.sendall(struct.pack(">I", len(request)) + request)
            head = _recv_exact(sock, 4, self.address)
            (length,) = struct.unpack(">I", head)
            if length > NSM_RESPONSE_MAX_SIZE:
                raise TeeformError(f"the NSM at {self.address} sent a {length}-byte reply, over {NSM_RESPONSE_MAX_SIZE}")
            return _recv_exact(sock, length, self.address)


def _recv_exact(sock: Any, n: int, where: object) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise TeeformError(f"the NSM at {where} closed the connection early")
        buf += chunk
    return bytes(buf)


def open_nsm(spec: str) -> NsmTransport:
    """``/dev/nsm`` (or any path) -> :class:`DeviceNsm`; ``unix:PATH`` / ``tcp:HOST:PORT`` ->
    :class:`SocketNsm`."""
    if spec.startswith(("unix:", "tcp:", "vsock:")):
        return SocketNsm(Address.parse(spec, field="--nsm"))
    return DeviceNsm(spec)


def get_attestation_document(nsm: NsmTransport, *, public_key: bytes, nonce: bytes | None = None,
                             user_data: bytes | None = None) -> bytes:
    """The COSE_Sign1 attestation document with ``public_key`` (DER SubjectPublicKeyInfo) in it.

    Raises:
        TeeformError: transport or NSM failure.
    """
    return parse_attestation_response(nsm.exchange(attestation_request(public_key, user_data, nonce)))


def serve_socket_nsm(listener: Any, answer: Callable[[bytes], bytes], *, once: bool = False) -> None:
    """Serve :class:`SocketNsm` requests on ``listener`` with ``answer(request) -> reply`` (for
    test responders); returns when the listener is closed, or after one request with ``once``."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                (length,) = struct.unpack(">I", _recv_exact(conn, 4, "client"))
                reply = answer(_recv_exact(conn, min(length, NSM_REQUEST_MAX_SIZE), "client"))
                conn.sendall(struct.pack(">I", len(reply)) + reply)
            except (OSError, TeeformError):
                pass
        if once:
            return
