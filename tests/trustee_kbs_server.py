"""A loopback KBS admin API for tests, implementing the documented request and response shapes.

Shapes from confidential-containers/trustee@78962cd4: ``kbs/docs/kbs.yaml`` (paths, bodies),
``kbs/src/api_server.rs`` (reference-value GET joins the remaining path with ``/``; resource-policy
bodies base64url-no-pad; GET resource-policy returns JSON), ``attestation-service/src/lib.rs``
(attestation policy base64url-no-pad), ``rvps/src/lib.rs`` + ``rvps/src/extractors/sample/mod.rs``
(message version 0.1.0, type ``sample``, standard-base64 JSON payload), ``kbs/src/error.rs``
(RFC 7807 body, 401 for every error but unknown paths, 404), ``kbs/docs/admin.md`` (bearer JWT with a
``role`` claim, verified with the admin public key; EdDSA as in ``kbs/src/admin/mod.rs``'s test).

The token is checked here with ``cryptography`` directly over the JWS signing input (RFC 7515 §5.2),
independently of the PyJWT signer the client uses. Policies are compiled with regorus (as the KBS
does before storing them), so a syntax error is refused like the real service refuses it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

PREFIX = "https://github.com/confidential-containers/kbs/errors"


def _b64url_decode(s: str) -> bytes:
    if "=" in s:
        raise ValueError("padding not allowed (URL_SAFE_NO_PAD)")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class KbsState:
    """What the loopback KBS stores; ``calls`` logs (method, path)."""

    def __init__(self, admin_public_key_pem: str, role: str = "teeform-admin") -> None:
        self.public_key = load_pem_public_key(admin_public_key_pem.encode())
        self.role = role
        self.reference_values: dict[str, Any] = {}
        self.attestation_policies: dict[str, str] = {}
        self.resource_policy: str | None = None
        self.resources: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_next: int | None = None


def _handler(state: KbsState) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def _send(self, code: int, body: bytes = b"", ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _err(self, kind: str, detail: str, code: int = 401) -> None:
            self._send(code, json.dumps({"type": f"{PREFIX}/{kind}", "detail": detail}).encode())

        def _authorized(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                self._err("AdminAuthAccess", "missing bearer token")
                return False
            try:
                h, p, s = auth[7:].split(".")
                header = json.loads(_b64url_decode(h))
                claims = json.loads(_b64url_decode(p))
                assert header["alg"] == "EdDSA"
                state.public_key.verify(_b64url_decode(s), f"{h}.{p}".encode())  # type: ignore[union-attr]
                assert claims["role"] == state.role and claims["exp"] > time.time()
            except (ValueError, KeyError, AssertionError, InvalidSignature) as exc:
                self._err("AdminAuthAccess", f"admin token refused: {exc!r}")
                return False
            return True

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            state.calls.append((method, path))
            if not path.startswith("/kbs/v0/"):
                return self._err("InvalidRequestPath", path, 404)
            if not self._authorized():
                return None
            if state.fail_next is not None:
                code, state.fail_next = state.fail_next, None
                return self._err("PluginInternalError", "injected failure", code)
            parts = path[len("/kbs/v0/"):].split("/")
            body = self._body() if method == "POST" else b""
            try:
                if parts[0] == "reference-value" and method == "POST":
                    msg = json.loads(body)
                    if msg.get("version") != "0.1.0":
                        return self._err("RvpsError", f"Version unmatched! Need 0.1.0, given {msg.get('version')}.")
                    if msg.get("type") != "sample":
                        return self._err("RvpsError", "unknown extractor")
                    prov = json.loads(base64.b64decode(msg["payload"], validate=True))
                    state.reference_values.update(prov)
                    return self._send(200)
                if parts[0] == "reference-value" and method == "GET":
                    rv_id = "/".join(parts[1:])
                    return self._send(200, json.dumps(state.reference_values.get(rv_id)).encode())
                if parts[0] in ("attestation-policy", "resource-policy") and method == "POST":
                    req = json.loads(body)
                    rego = _b64url_decode(req["policy"]).decode()
                    import regorus

                    regorus.Engine().add_policy("p.rego", rego)  # the KBS compiles before storing
                    if parts[0] == "attestation-policy":
                        state.attestation_policies[req["policy_id"]] = rego
                    else:
                        state.resource_policy = rego
                    return self._send(200)
                if parts[0] == "resource-policy" and method == "GET":
                    return self._send(200, json.dumps({"resource-policy": state.resource_policy}).encode())
                if parts[0] == "resource" and len(parts) == 4 and method in ("POST", "DELETE"):
                    key = "/".join(parts[1:])
                    if method == "POST":
                        state.resources[key] = body
                    else:
                        if key not in state.resources:
                            return self._err("PluginNotFound", key, 404)
                        del state.resources[key]
                    return self._send(200)
            except (ValueError, KeyError, RuntimeError) as exc:
                return self._err("ParsePolicyError", str(exc))
            return self._err("InvalidRequestPath", path, 404)

        def do_GET(self) -> None:  # noqa: N802
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._route("DELETE")

    return H


class LoopbackKbs:
    """Context manager: a KBS on ``http://127.0.0.1:<port>`` with :class:`KbsState` ``state``."""

    def __init__(self, admin_public_key_pem: str, *, tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate PEM, private key PEM) to serve HTTPS, as the KBS's ``[http_server]``
        ``certificate`` / ``private_key`` (kbs/docs/config.md)."""
        self.state = KbsState(admin_public_key_pem)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        scheme = "http"
        if tls is not None:
            import ssl
            import tempfile

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            with tempfile.TemporaryDirectory() as d:
                Path(d, "c.pem").write_text(tls[0])
                Path(d, "k.pem").write_text(tls[1])
                ctx.load_cert_chain(Path(d, "c.pem"), Path(d, "k.pem"))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LoopbackKbs:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
