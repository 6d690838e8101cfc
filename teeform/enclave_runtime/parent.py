"""The parent side: serve IMDSv2 role credentials and the sealed file to the enclave; collect its logs.

Standard library only, Python >= 3.9 (Amazon Linux 2023's ``python3`` is 3.9): the enclave host's
user data installs this file with nothing else but ``teeform/errors.py`` and the transport/wire
modules next to it.

``python3 -m teeform.enclave_runtime.parent credentials --listen vsock:any:9100 --sealed FILE``
    Serves the :mod:`teeform.enclave_runtime.wire` protocol. Credentials come from IMDSv2 (EC2 User
    Guide, "Use IMDSv2" and "Retrieve security credentials from instance metadata"):
    ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` gives a session token;
    ``GET /latest/meta-data/iam/security-credentials/`` (header ``X-aws-ec2-metadata-token``) names the
    role; ``GET .../security-credentials/<role>`` returns ``{"Code": "Success", "AccessKeyId",
    "SecretAccessKey", "Token", "Expiration", ...}``. EC2 makes new credentials available at least 5
    minutes before the old ones expire; this server refreshes whenever the cached ones are within
    ``--refresh-margin`` (default :data:`REFRESH_MARGIN_S`) of expiry, both on a background timer and
    before answering a request, and never serves credentials that have expired. ``--allow-cid``
    restricts who may ask to the enclave's CID (vsock peers only).

``python3 -m teeform.enclave_runtime.parent logs --listen vsock:any:9101 [--file PATH]``
    Copies every line the enclave sends to stdout (the journal, under systemd) prefixed with
    ``enclave:``, and appends it to ``--file`` (which the CloudWatch agent can ship).

Errors: one line ``teeform-parent: error: ...`` and exit status 2 for bad options; a failed IMDS call
is answered to the enclave as ``{"error": ...}`` and logged, and the server keeps running.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from teeform.enclave_runtime import CREDENTIALS_PORT, LOG_PORT, PROTOCOL_VERSION
from teeform.enclave_runtime.transport import Address
from teeform.enclave_runtime.wire import OPS, encode, read_message
from teeform.errors import TeeformError

IMDS_URL = "http://169.254.169.254"
#: Refresh credentials this long before they expire (seconds). EC2 rotates them at least 5 minutes
#: ahead (module docstring); 15 minutes leaves room for a slow IMDS.
REFRESH_MARGIN_S = 900
#: IMDSv2 session token lifetime requested (seconds; the maximum is 21600).
TOKEN_TTL_S = 21600
#: Largest sealed file served (as :data:`teeform.enclave_runtime.wire.MAX_MESSAGE` minus framing).
MAX_SEALED_BYTES = 3 << 20
PREFIX = "teeform-parent"


def log(msg: str, out: TextIO | None = None) -> None:
    """One line on stderr (the journal under systemd)."""
    print(f"{PREFIX}: {msg}", file=out or sys.stderr, flush=True)


class Imds:
    """A minimal IMDSv2 client (module docstring) against ``base`` (default the link-local IMDS)."""

    def __init__(self, base: str = IMDS_URL, timeout: float = 3.0) -> None:
        parts = urlsplit(base)
        if parts.scheme != "http" or not parts.hostname:
            raise TeeformError(f"IMDS URL must be http://HOST[:PORT], got {base!r}", field="--imds")
        self.host, self.port, self.timeout = parts.hostname, parts.port or 80, timeout

    def _call(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(1 << 20)
        except (OSError, http.client.HTTPException) as exc:
            raise TeeformError(f"IMDS {method} {path} failed: {exc}") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise TeeformError(f"IMDS {method} {path} answered HTTP {resp.status}")
        return body

    def credentials(self) -> dict[str, str]:
        """The instance role's current credentials (``AccessKeyId``, ``SecretAccessKey``, ``Token``,
        ``Expiration``).

        Raises:
            TeeformError: IMDS unreachable, no role attached, or a document that is not
                ``Code: Success`` with the four string fields.
        """
        token = self._call("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)}).decode()
        hdr = {"X-aws-ec2-metadata-token": token}
        roles = self._call("GET", "/latest/meta-data/iam/security-credentials/", hdr).decode("utf-8", "replace").split()
        if not roles:
            raise TeeformError("the instance has no IAM role (instance profile)")
        doc = self._call("GET", f"/latest/meta-data/iam/security-credentials/{roles[0]}", hdr)
        try:
            obj = json.loads(doc)
        except ValueError:
            raise TeeformError("IMDS credentials are not JSON") from None
        if not isinstance(obj, dict) or obj.get("Code") != "Success":
            raise TeeformError(f"IMDS credentials Code is {obj.get('Code') if isinstance(obj, dict) else None!r}, not Success")
        out = {k: obj.get(k) for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")}
        if not all(isinstance(v, str) and v for v in out.values()):
            raise TeeformError("IMDS credentials lack AccessKeyId, SecretAccessKey, Token or Expiration")
        return out  # type: ignore[return-value]


def _expiry(creds: dict[str, str]) -> dt.datetime:
    return dt.datetime.fromisoformat(creds["Expiration"].replace("Z", "+00:00"))


class CredentialCache:
    """The latest credentials from ``fetch`` (e.g. :meth:`Imds.credentials`), refreshed when within
    ``margin_s`` of expiry; ``clock`` returns the current aware UTC time."""

    def __init__(self, fetch: Callable[[], dict[str, str]], *, margin_s: int = REFRESH_MARGIN_S,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:  # noqa: UP017 (3.9)
        self.fetch, self.margin_s, self.clock = fetch, margin_s, clock
        self._creds: dict[str, str] | None = None
        self._lock = threading.Lock()

    def _stale(self) -> bool:
        return self._creds is None or _expiry(self._creds) - self.clock() <= dt.timedelta(seconds=self.margin_s)

    def get(self) -> dict[str, str]:
        """Current credentials, refreshing first if stale.

        Raises:
            TeeformError: the refresh failed and the cached ones (if any) have expired.
        """
        with self._lock:
            if self._stale():
                try:
                    fresh = self.fetch()
                    _expiry(fresh)
                    self._creds = fresh
                except (TeeformError, ValueError) as exc:
                    if self._creds is None or _expiry(self._creds) <= self.clock():
                        raise TeeformError(f"no valid credentials: {exc}") from None
                    log(f"warning: refresh failed, serving credentials valid until {self._creds['Expiration']}: {exc}")
            assert self._creds is not None
            if _expiry(self._creds) <= self.clock():
                raise TeeformError(f"the instance role credentials expired at {self._creds['Expiration']}")
            return dict(self._creds)

    def seconds_until_refresh(self) -> float:
        """How long the background refresher may sleep (at least 30 s, at most 10 min)."""
        with self._lock:
            if self._creds is None:
                return 30.0
            left = (_expiry(self._creds) - self.clock()).total_seconds() - self.margin_s
        return min(600.0, max(30.0, left))


class CredentialsServer:
    """Serve ``credentials`` (from ``cache``) and ``sealed`` (the text of ``sealed_path``) on ``listen``.

    ``allow_cids``: when given, vsock peers with another CID are refused. ``address`` is the bound
    address. :meth:`serve_forever` blocks; :meth:`start` runs it on a daemon thread.
    """

    def __init__(self, listen: Address, cache: CredentialCache, sealed_path: Path | None, *,
                 allow_cids: Sequence[int] = ()) -> None:
        from teeform.enclave_runtime.transport import bound_address

        self.cache, self.sealed_path, self.allow_cids = cache, sealed_path, tuple(allow_cids)
        self._sock = listen.listen()
        self.address = bound_address(self._sock, listen)
        self._stop = threading.Event()

    def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if req.get("version") != PROTOCOL_VERSION:
            return {"error": f"unsupported protocol version {req.get('version')!r}"}
        if op not in OPS:
            return {"error": f"unknown op {op!r}"}
        try:
            if op == "credentials":
                return {"credentials": self.cache.get()}
            if self.sealed_path is None:
                return {"error": "no sealed file is configured on the parent (--sealed)"}
            data = self.sealed_path.read_bytes() if self.sealed_path.is_file() else None
            if data is None:
                return {"error": f"{self.sealed_path} is missing (run `teeform seal` and copy the file there)"}
            if len(data) > MAX_SEALED_BYTES:
                return {"error": f"{self.sealed_path} is over {MAX_SEALED_BYTES} bytes"}
            return {"sealed": data.decode("utf-8")}
        except (TeeformError, OSError, UnicodeDecodeError) as exc:
            text = exc.render() if isinstance(exc, TeeformError) else str(exc)
            log(f"{op}: {text}")
            return {"error": text}

    def _handle(self, conn: socket.socket, peer: Any) -> None:
        with conn:
            conn.settimeout(10.0)
            try:
                if self.allow_cids and isinstance(peer, tuple) and conn.family == getattr(socket, "AF_VSOCK", -1) \
                        and peer[0] not in self.allow_cids:
                    reply: dict[str, Any] = {"error": f"CID {peer[0]} is not allowed"}
                else:
                    reply = self._answer(read_message(conn, peer=f"client {peer}"))
                conn.sendall(encode({**reply, "version": PROTOCOL_VERSION}))
            except (TeeformError, OSError) as exc:
                log(f"client {peer}: {exc}")

    def serve_forever(self) -> None:
        """Accept until :meth:`stop`."""
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, peer), daemon=True).start()

    def start(self) -> CredentialsServer:
        """Serve on a daemon thread, plus the background refresher."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        threading.Thread(target=self._refresh_loop, daemon=True).start()
        return self

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.cache.seconds_until_refresh()):
            with contextlib.suppress(TeeformError):
                self.cache.get()

    def stop(self) -> None:
        """Stop accepting."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()


class LogServer:
    """Copy each line received on ``listen`` to ``out`` prefixed ``enclave:`` (and to ``file``)."""

    def __init__(self, listen: Address, out: TextIO, file: Path | None = None) -> None:
        from teeform.enclave_runtime.transport import bound_address

        self.out, self.file = out, file
        self._sock = listen.listen()
        self.address = bound_address(self._sock, listen)
        self._lock = threading.Lock()

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as fh:
            for raw in fh:
                line = "enclave: " + raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._lock:
                    print(line, file=self.out, flush=True)
                    if self.file is not None:
                        with open(self.file, "a", encoding="utf-8") as f:
                            f.write(line + "\n")

    def serve_forever(self) -> None:
        """Accept until the socket is closed."""
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def stop(self) -> None:
        """Stop accepting."""
        with contextlib.suppress(OSError):
            self._sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``credentials`` or ``logs`` (module docstring). Returns 2 on a bad option or bind failure."""
    p = argparse.ArgumentParser(prog="teeform-parent")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("credentials", help="serve IMDSv2 credentials and the sealed file")
    c.add_argument("--listen", default=f"vsock:any:{CREDENTIALS_PORT}")
    c.add_argument("--sealed", default=None, help="the `teeform seal` output to hand to the enclave")
    c.add_argument("--imds", default=IMDS_URL)
    c.add_argument("--refresh-margin", type=int, default=REFRESH_MARGIN_S)
    c.add_argument("--allow-cid", type=int, action="append", default=[])
    lg = sub.add_parser("logs", help="write the enclave's log stream to stdout (the journal)")
    lg.add_argument("--listen", default=f"vsock:any:{LOG_PORT}")
    lg.add_argument("--file", default=None)
    a = p.parse_args(argv)
    try:
        if a.cmd == "credentials":
            cache = CredentialCache(Imds(a.imds).credentials, margin_s=a.refresh_margin)
            server = CredentialsServer(Address.parse(a.listen, field="--listen"), cache,
                                       Path(a.sealed) if a.sealed else None, allow_cids=a.allow_cid)
            log(f"serving credentials on {server.address}")
            threading.Thread(target=server._refresh_loop, daemon=True).start()
            server.serve_forever()
        else:
            logs = LogServer(Address.parse(a.listen, field="--listen"), sys.stdout, Path(a.file) if a.file else None)
            log(f"collecting enclave logs on {logs.address}")
            logs.serve_forever()
    except TeeformError as exc:
        log(f"error: {exc.render()}")
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 0
    return 1  # the listener closed under us: exit non-zero so systemd restarts the service


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
