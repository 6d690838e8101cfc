"""A loopback fake of the Azure Key Vault keys data plane, for tests at the HTTP boundary.

It is a real HTTPS server on 127.0.0.1 (self-signed certificate for IP 127.0.0.1, made with
``cryptography``), so the unmodified ``azure-keyvault-keys`` clients talk to it through their own
pipeline: JSON serializer, Key Vault challenge authentication (the first request of a client goes
out without a token and gets a ``401`` with a ``WWW-Authenticate`` challenge, as described in
``azure/keyvault/keys/_shared/challenge_auth_policy.py``), TLS enforcement.

Routes (Key Vault REST API 7.x, "Keys"):

* ``POST /keys/{name}/create`` -> a key bundle for a real RSA key the fake holds; the request body is
  recorded (the tests read ``release_policy.data`` from it: what the SDK's serializer put on the wire).
* ``GET /keys/{name}[/{version}]`` -> the public key (``n``, ``e`` base64url).
* ``POST /keys/{name}/{version}/wrapkey`` -> RSA-OAEP-256 (OAEP, SHA-256, MGF1-SHA-256) of ``value``
  under the key; ``unwrapkey`` the inverse.

Every request is appended to :attr:`FakeKeyVault.requests` as ``(method, path, json body)``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net"'
KEY_VERSION = "0123456789abcdef0123456789abcdef"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class FakeCredential:
    """A ``TokenCredential`` that hands out a fixed token (the fake does not check it, only its presence)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(datetime.datetime.now().timestamp()) + 3600)


OAEP256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class FakeKeyVault:
    """State of the fake: its RSA keys by name, the recorded requests, its URL and CA file."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.url = ""
        self.ca_file = ""

    def key(self, name: str) -> rsa.RSAPrivateKey:
        if name not in self.keys:
            self.keys[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[name]

    def bundle(self, name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        pub = self.key(name).public_key().public_numbers()
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        doc = {
            "key": {"kid": f"{self.url}/keys/{name}/{KEY_VERSION}", "kty": "RSA-HSM",
                    "key_ops": ["wrapKey", "unwrapKey", "encrypt", "decrypt"], "n": b64u(n), "e": b64u(b"\x01\x00\x01")},
            "attributes": {"enabled": True, "exportable": True, "recoveryLevel": "Recoverable+Purgeable"},
        }
        doc.update(extra or {})
        return doc


def _handler(vault: FakeKeyVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, doc: Any = None, headers: dict[str, str] | None = None) -> None:
            body = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if "Authorization" not in self.headers:
                self._reply(401, {"error": {"code": "Unauthorized"}}, {"WWW-Authenticate": CHALLENGE})
                return
            body = json.loads(raw) if raw else None
            path = urlsplit(self.path).path.rstrip("/")
            vault.requests.append((self.command, path, body))
            parts = path.strip("/").split("/")
            if parts[0] != "keys" or len(parts) < 2:
                self._reply(404, {"error": {"code": "NotFound"}})
                return
            name = parts[1]
            if self.command == "POST" and parts[2:] == ["create"]:
                extra = {"release_policy": body["release_policy"]} if body and "release_policy" in body else {}
                self._reply(200, vault.bundle(name, extra))
            elif self.command == "GET" and len(parts) <= 3:
                self._reply(200, vault.bundle(name))
            elif self.command == "POST" and len(parts) == 4 and parts[3] in ("wrapkey", "unwrapkey"):
                assert body["alg"] == "RSA-OAEP-256", body
                data = unb64u(body["value"])
                k = vault.key(name)
                out = k.public_key().encrypt(data, OAEP256) if parts[3] == "wrapkey" else k.decrypt(data, OAEP256)
                self._reply(200, {"kid": f"{vault.url}/keys/{name}/{KEY_VERSION}", "value": b64u(out)})
            else:
                self._reply(404, {"error": {"code": "NotFound"}})

        do_GET = do_POST = do_PUT = do_PATCH = _handle

    return Handler


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "kv-cert.pem", tmp / "kv-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@contextmanager
def fake_key_vault(tmp: Path) -> Iterator[FakeKeyVault]:
    """Run a :class:`FakeKeyVault` on an HTTPS port of 127.0.0.1 for the duration of the block."""
    vault = FakeKeyVault()
    cert_file, key_file = _self_signed(tmp)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(vault))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    vault.url = f"https://127.0.0.1:{server.server_address[1]}"
    vault.ca_file = str(cert_file)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield vault
    finally:
        server.shutdown()
        server.server_close()
