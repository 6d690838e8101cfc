"""The parent <-> enclave protocol: one JSON request line, one JSON reply line, per connection.

A teeform protocol (no upstream standard), version :data:`teeform.enclave_runtime.PROTOCOL_VERSION`.
Every message is one UTF-8 JSON object (no ``NaN``/``Infinity``) followed by ``\\n``, at most
:data:`MAX_MESSAGE` bytes including the newline. The enclave connects, sends a request, reads the
reply, and closes::

    -> {"op": "credentials", "version": 1}
    <- {"credentials": {"AccessKeyId": "...", "SecretAccessKey": "...", "Token": "...",
                        "Expiration": "2026-12-03T16:00:00Z"}, "version": 1}

    -> {"op": "sealed", "version": 1}
    <- {"sealed": "<the teeform seal file, as text>", "version": 1}

    <- {"error": "<one line>", "version": 1}          # any failure on the parent side

``credentials`` carries the four fields of the IMDSv2 ``iam/security-credentials/<role>`` document
(EC2 User Guide, "Retrieve security credentials from instance metadata"); ``Expiration`` is ISO 8601
UTC. The sealed file is not secret (it is ciphertext a KMS key policy gates), so the parent can
hand it out; it can only withhold it or hand out an older one (see ``docs/enclave-runtime.md``).
"""

from __future__ import annotations

import json
import socket
from typing import Any

from teeform.enclave_runtime import PROTOCOL_VERSION
from teeform.enclave_runtime.transport import Address
from teeform.errors import TeeformError

#: Largest message, newline included (a sealed file of 1 MiB of secrets is about 1.4 MiB base64).
MAX_MESSAGE = 4 << 20
#: Operations the parent serves.
OPS = ("credentials", "sealed")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode(obj: dict[str, Any]) -> bytes:
    """One message: compact JSON with sorted keys, then ``\\n``.

    Raises:
        TeeformError: the encoding is larger than :data:`MAX_MESSAGE`.
    """
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
    if len(data) > MAX_MESSAGE:
        raise TeeformError(f"message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    return data


def read_message(sock: socket.socket, *, peer: str) -> dict[str, Any]:
    """Read one message (module docstring) from ``sock``.

    Raises:
        TeeformError: the peer closed early, sent more than :data:`MAX_MESSAGE` bytes without a
            newline, or a line that is not a JSON object in strict UTF-8.
    """
    buf = bytearray()
    while b"\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):  # noqa: UP041  (socket.timeout differs on Python 3.9, AL2023's python3)
            raise TeeformError(f"{peer} did not answer in time") from None
        except OSError as exc:
            raise TeeformError(f"reading from {peer} failed: {exc.strerror or exc}") from None
        if not chunk:
            raise TeeformError(f"{peer} closed the connection before a complete message")
        buf += chunk
        if len(buf) > MAX_MESSAGE:
            raise TeeformError(f"{peer} sent more than {MAX_MESSAGE} bytes without a newline")
    line, _, rest = bytes(buf).partition(b"\n")
    if rest:
        raise TeeformError(f"{peer} sent bytes after the message")
    try:
        obj = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TeeformError(f"{peer} sent a message that is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise TeeformError(f"{peer} sent a JSON {type(obj).__name__}, expected an object")
    return obj


def request(address: Address, op: str, *, timeout: float = 10.0) -> Any:
    """Ask the parent at ``address`` for ``op`` and return the reply's ``op`` field.

    Raises:
        TeeformError: connection or protocol failure, a wrong ``version``, an ``error`` reply
            (its text is in the message), or a reply without the ``op`` field.
    """
    peer = f"the parent at {address}"
    with address.connect(timeout) as sock:
        try:
            sock.sendall(encode({"op": op, "version": PROTOCOL_VERSION}))
        except OSError as exc:
            raise TeeformError(f"sending to {peer} failed: {exc.strerror or exc}") from None
        reply = read_message(sock, peer=peer)
    if reply.get("version") != PROTOCOL_VERSION or type(reply.get("version")) is not int:
        raise TeeformError(f"{peer} speaks protocol version {reply.get('version')!r}, expected {PROTOCOL_VERSION}")
    if "error" in reply:
        raise TeeformError(f"{peer} refused {op!r}: {str(reply['error'])[:300]}")
    if op not in reply:
        raise TeeformError(f"{peer} replied without {op!r}")
    return reply[op]
