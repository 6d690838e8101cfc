"""A client of Trustee's KBS admin API (``/kbs/v0``), authenticated with a bearer JWT signed by the admin key.

Endpoints and bodies (``kbs/docs/kbs.yaml``, ``kbs/src/api_server.rs`` at confidential-containers/trustee@78962cd4):

======================================  ======  ==========================================================
path                                    method  body / answer
======================================  ======  ==========================================================
``/kbs/v0/reference-value``             POST    an RVPS message (JSON, :mod:`teeform.trustee.reference_values`)
``/kbs/v0/reference-value/{id}``        GET     the stored value (JSON; ``null`` when unknown)
``/kbs/v0/attestation-policy``          POST    ``{"policy_id": ..., "policy": base64url-no-pad(rego)}``
                                                (``attestation-service/src/lib.rs::set_policy`` decodes
                                                ``URL_SAFE_NO_PAD``)
``/kbs/v0/resource-policy``             POST    ``{"policy": base64url-no-pad(rego)}`` (``api_server.rs``)
``/kbs/v0/resource-policy``             GET     the stored policies (JSON)
``/kbs/v0/resource/{repo}/{type}/{tag}``  POST  the raw secret bytes; DELETE removes it (resource plugin,
                                                ``kbs/src/plugins/implementations/resource/mod.rs``)
======================================  ======  ==========================================================

Errors are RFC 7807 ``{"type": "https://github.com/confidential-containers/kbs/errors/<Kind>",
"detail": ...}`` with status 401 (or 404 for an unknown path, ``kbs/src/error.rs``); the client
raises :class:`KbsError` naming the endpoint, the status, the kind and the detail.

**Admin authentication** (``kbs/docs/admin.md``, ``AuthenticatedAuthorization`` with
``bearer_jwt``): ``Authorization: Bearer <JWT>``; the JWT **must** carry a ``role`` claim (mapped to
the regex ACL), may carry ``iss``/``aud`` (checked when the KBS config names them), and is signed
with the admin private key; Trustee's own test signs EdDSA over Ed25519 (``kbs/src/admin/mod.rs``).
Tokens are signed with PyJWT (RFC 8037 ``EdDSA``) and live :data:`TOKEN_LIFETIME_S` seconds.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from teeform.errors import TeeformError
from teeform.safeload import loads_json

#: Lifetime of an admin token (seconds).
TOKEN_LIFETIME_S = 300
#: Default ``role`` claim (the ACL role the KBS config grants teeform's endpoints).
DEFAULT_ROLE = "teeform-admin"
#: Upper bound of an answer body read from the KBS (bytes).
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class KbsError(TeeformError):
    """A KBS admin call failed (status, RFC 7807 kind and detail in the message)."""

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None) -> None:
        self.status = status
        self.kind = kind
        super().__init__(message, field="keyBroker")


def b64url(data: bytes) -> str:
    """Base64url without padding (what the KBS decodes policies with)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def admin_token(private_key_pem: str, *, role: str = DEFAULT_ROLE, issuer: str | None = None,
                audience: str | None = None, now: int | None = None) -> str:
    """A KBS admin JWT: header ``{"alg": "EdDSA", "typ": "JWT"}``, claims ``role``, ``iat``, ``exp``
    (+ ``iss``/``aud`` when given), signed with the Ed25519 key in ``private_key_pem`` (PKCS#8 PEM).

    Raises:
        TeeformError: the key is not an Ed25519 private key.
    """
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise TeeformError(f"the KBS admin key is not a PEM private key: {exc}", field="keyBroker.adminKey") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise TeeformError("the KBS admin key must be Ed25519", field="keyBroker.adminKey")
    t = int(time.time()) if now is None else now
    claims: dict[str, Any] = {"role": role, "iat": t, "exp": t + TOKEN_LIFETIME_S}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, key, algorithm="EdDSA")


@dataclass(frozen=True)
class KbsAdmin:
    """Admin calls against one KBS.

    Attributes:
        url: the KBS base URL (``https://host:8080``; ``/kbs/v0`` is appended).
        admin_key_pem: the Ed25519 admin private key (PKCS#8 PEM). Secret.
        ca_cert_pem: PEM certificate(s) to trust for HTTPS (a self-signed KBS certificate); None =
            the system store.
        role / issuer / audience: JWT claims (see module docs).
        timeout: per request, seconds.
        pin_only: trust exactly ``ca_cert_pem`` (a self-signed KBS certificate generated by teeform)
            without matching the host name, for a KBS reached by IP address; the chain is still verified.
    """

    url: str
    admin_key_pem: str
    ca_cert_pem: str | None = None
    role: str = DEFAULT_ROLE
    issuer: str | None = None
    audience: str | None = None
    timeout: float = 30.0
    pin_only: bool = False

    def __post_init__(self) -> None:
        u = urllib.parse.urlsplit(self.url)
        if u.scheme not in ("https", "http") or not u.netloc or u.query or u.fragment:
            raise TeeformError(f"KBS URL must be http(s)://host[:port], got {self.url!r}", field="keyBroker.url")
        if self.pin_only and not self.ca_cert_pem:
            raise TeeformError("pin_only needs the KBS certificate", field="keyBroker.caCert")

    def _call(self, method: str, path: str, body: bytes | None = None,
              content_type: str = "application/json") -> bytes:
        endpoint = f"{method} /kbs/v0/{path}"
        req = urllib.request.Request(self.url.rstrip("/") + "/kbs/v0/" + path, data=body, method=method)
        req.add_header("Authorization", "Bearer " + admin_token(self.admin_key_pem, role=self.role,
                                                                issuer=self.issuer, audience=self.audience))
        if body is not None:
            req.add_header("Content-Type", content_type)
        ctx = None
        if self.url.startswith("https:"):
            ctx = ssl.create_default_context(cadata=self.ca_cert_pem) if self.ca_cert_pem else ssl.create_default_context()
            if self.pin_only and self.ca_cert_pem:
                ctx.check_hostname = False  # the only trusted certificate is the pinned one
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:  # noqa: S310 (http(s) checked)
                return bytes(resp.read(MAX_ANSWER_BYTES + 1)[:MAX_ANSWER_BYTES])
        except urllib.error.HTTPError as exc:
            raw = exc.read(64 * 1024)
            kind, detail = None, raw.decode("utf-8", "replace").strip()[:500]
            try:
                info = loads_json(raw, source=endpoint)
                kind = str(info.get("type", "")).rsplit("/", 1)[-1] or None
                detail = str(info.get("detail", detail))[:500]
            except (TeeformError, AttributeError):
                pass
            raise KbsError(f"{endpoint}: HTTP {exc.code}" + (f" {kind}" if kind else "") + (f": {detail}" if detail else ""),
                           status=exc.code, kind=kind) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError) or isinstance(exc, ssl.SSLError):
                raise KbsError(f"{endpoint}: TLS with {self.url} failed (certificate not trusted?): {reason}") from None
            raise KbsError(f"{endpoint}: cannot reach {self.url}: {reason}") from None

    # -- reference values
    def register_reference_values(self, message: dict[str, str]) -> None:
        """``POST /reference-value`` with an RVPS message."""
        self._call("POST", "reference-value", json.dumps(message).encode())

    def get_reference_value(self, rv_id: str) -> Any:
        """``GET /reference-value/{id}``: the stored JSON value, or None."""
        raw = self._call("GET", "reference-value/" + urllib.parse.quote(rv_id, safe="/."))
        return self._json(raw, "reference-value") if raw.strip() else None

    # -- policies
    def set_attestation_policy(self, rego: str, policy_id: str = "default_cpu") -> None:
        """``POST /attestation-policy``; ``default_cpu`` is the id the KBS-built-in AS evaluates for CPU TEEs."""
        body = {"policy_id": policy_id, "policy": b64url(rego.encode())}
        self._call("POST", "attestation-policy", json.dumps(body).encode())

    def set_resource_policy(self, rego: str) -> None:
        """``POST /resource-policy``."""
        self._call("POST", "resource-policy", json.dumps({"policy": b64url(rego.encode())}).encode())

    def get_resource_policy(self) -> Any:
        """``GET /resource-policy``: the stored policies (JSON)."""
        return self._json(self._call("GET", "resource-policy"), "resource-policy")

    @staticmethod
    def _json(raw: bytes, endpoint: str) -> Any:
        """A KBS answer parsed with :func:`teeform.safeload.loads_json` (bounded depth and numbers, no
        duplicate keys), so a broken or hostile KBS gives a :class:`KbsError`, never a traceback."""
        try:
            return loads_json(raw, source="answer")
        except TeeformError as exc:
            raise KbsError(f"{endpoint}: the KBS answered with unusable JSON: {exc.message}") from None

    # -- resources
    def put_resource(self, repository: str, type_: str, tag: str, data: bytes) -> None:
        """``POST /resource/{repository}/{type}/{tag}`` with the raw bytes."""
        self._call("POST", f"resource/{_seg(repository)}/{_seg(type_)}/{_seg(tag)}", data, "application/octet-stream")

    def delete_resource(self, repository: str, type_: str, tag: str) -> None:
        """``DELETE /resource/{repository}/{type}/{tag}`` (a missing resource is not an error)."""
        try:
            self._call("DELETE", f"resource/{_seg(repository)}/{_seg(type_)}/{_seg(tag)}")
        except KbsError as exc:
            if exc.status != 404:
                raise


def _seg(s: str) -> str:
    if not s or "/" in s or s in (".", ".."):
        raise TeeformError(f"invalid KBS resource path segment {s!r}", field="keyBroker")
    return urllib.parse.quote(s, safe="")


__all__ = ["KbsAdmin", "KbsError", "admin_token", "b64url", "TOKEN_LIFETIME_S", "DEFAULT_ROLE"]
