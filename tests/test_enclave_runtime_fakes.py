"""Loopback stand-ins for everything outside the enclave runtime (imported by the runtime tests).

* :class:`FakeImds`: IMDSv2 (``PUT /latest/api/token``, then the ``iam/security-credentials`` GETs with
  the token header; EC2 User Guide "Use IMDSv2"), serving credentials whose expiry the test sets.
* :class:`NsmResponder`: the NSM request protocol (``{"Attestation": {...}}`` CBOR, see
  :mod:`teeform.enclave_runtime.nsm`) over a unix socket, answering with documents minted by the
  throwaway CA of ``tests/nitro_testca.py`` carrying the requested ``public_key`` and ``nonce``.
* :class:`RecipientKms`: KMS ``Decrypt`` with ``Recipient``. moto (5.2.5, the pinned version) ignores
  ``Recipient`` and returns ``Plaintext`` (checked: ``moto/kms`` has no ``Recipient`` handling), so
  this small responder implements the documented behaviour in front of moto: it checks the SigV4
  ``Authorization`` header names the served access key, verifies the attestation document with
  teeform's own verifier (:func:`teeform.nitro.verify.verify_attestation`, the code behind
  ``teeform verify attestation --root``) against the allowed PCRs the way the key policy's
  ``kms:RecipientAttestation:PCR<n>`` conditions would (eif-nitro.md §5.1), refuses with
  ``AccessDeniedException`` otherwise, and asks moto for the plaintext and returns it only as
  ``CiphertextForRecipient`` (CMS EnvelopedData to the document's RSA key, eif-nitro.md §5.2, built by
  :func:`teeform.nitro.kms_recipient.envelop_for_recipient`) with no ``Plaintext``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cbor2
import nitro_testca as tca

from teeform.enclave_runtime import nsm as nsm_mod
from teeform.enclave_runtime.transport import Address

UTC = dt.UTC


def _serve(handler: type[BaseHTTPRequestHandler], owner: Any) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.owner = owner  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class FakeImds:
    """IMDSv2 on loopback; ``expires_in`` (seconds from now) sets each served ``Expiration``."""

    ROLE = "teeform-dev-agent-enclave-host"

    def __init__(self, *, expires_in: float = 3600, access_key: str = "ASIATESTTEST00000001") -> None:
        self.expires_in, self.access_key, self.calls, self.token = expires_in, access_key, 0, "imds-token-1"
        self.credential_fetches = 0

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:  # noqa: N802
                me: FakeImds = self.server.owner  # type: ignore[attr-defined]
                me.calls += 1
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._send(200 if ok else 400, me.token.encode() if ok else b"")

            def do_GET(self) -> None:  # noqa: N802
                me: FakeImds = self.server.owner  # type: ignore[attr-defined]
                me.calls += 1
                if self.headers.get("X-aws-ec2-metadata-token") != me.token:
                    return self._send(401, b"")
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path == base:
                    return self._send(200, me.ROLE.encode())
                if self.path == base + me.ROLE:
                    me.credential_fetches += 1
                    exp = (dt.datetime.now(UTC) + dt.timedelta(seconds=me.expires_in)).replace(microsecond=0)
                    doc = {"Code": "Success", "LastUpdated": dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "Type": "AWS-HMAC", "AccessKeyId": me.access_key, "SecretAccessKey": "fake-secret-key",
                           "Token": f"fake-session-token-{me.credential_fetches}",
                           "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}
                    return self._send(200, json.dumps(doc).encode())
                return self._send(404, b"")

        self.server = _serve(H, self)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NsmResponder:
    """A stand-in NSM on ``unix:<path>``; documents are signed by ``ca`` with ``pcrs``.

    ``tamper`` flips one byte of the document's signature after signing.
    """

    def __init__(self, path: Path, ca: tca.TestCA, pcrs: dict[int, bytes], *, tamper: bool = False) -> None:
        self.ca, self.pcrs, self.tamper, self.requests = ca, pcrs, tamper, 0
        self.address = Address("unix", str(path))
        self._sock = self.address.listen()
        threading.Thread(target=nsm_mod.serve_socket_nsm, args=(self._sock, self.answer), daemon=True).start()

    def answer(self, request: bytes) -> bytes:
        self.requests += 1
        req = cbor2.loads(request)
        body = req.get("Attestation") if isinstance(req, dict) else None
        if not isinstance(body, dict):
            return cbor2.dumps({"Error": "InvalidOperation"})
        doc = tca.mint(self.ca, dt.datetime.now(UTC), pcrs=self.pcrs, public_key=body.get("public_key"),
                       nonce=body.get("nonce"), user_data=body.get("user_data"))
        if self.tamper:
            arr = cbor2.loads(doc)
            arr[3] = bytes([arr[3][0] ^ 1]) + arr[3][1:]
            doc = cbor2.dumps(arr)
        return cbor2.dumps({"Attestation": {"document": doc}})

    def close(self) -> None:
        self._sock.close()


class RecipientKms:
    """KMS ``Decrypt`` with ``Recipient`` in front of moto (module docstring).

    Args:
        moto_url: the moto server; region: its region.
        root_pem: the test CA root (what ``--root`` would name).
        allowed_pcrs: ``{"PCR0": hex, ...}``, the key policy's conditions.
        access_key: the only access key id accepted in the SigV4 header.
    """

    def __init__(self, moto_url: str, region: str, root_pem: Path, allowed_pcrs: dict[str, str], access_key: str) -> None:
        import boto3

        self.moto = boto3.client("kms", region_name=region, endpoint_url=moto_url)
        self.root_pem, self.allowed, self.access_key = root_pem, allowed_pcrs, access_key
        self.decrypts: list[dict[str, Any]] = []
        self.denials: list[str] = []

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                me: RecipientKms = self.server.owner  # type: ignore[attr-defined]
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code, reply = me.handle(self.headers.get("X-Amz-Target", ""), self.headers.get("Authorization", ""),
                                        self.headers.get("X-Amz-Security-Token"), json.loads(body or b"{}"))
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = _serve(H, self)
        self.address = Address("tcp", "127.0.0.1", self.server.server_address[1])

    def _deny(self, why: str) -> tuple[int, dict[str, Any]]:
        self.denials.append(why)
        return 400, {"__type": "AccessDeniedException", "message": why}

    def handle(self, target: str, auth: str, token: str | None, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        from teeform.errors import TeeformError
        from teeform.nitro.attestation import parse_attestation_document
        from teeform.nitro.verify import AllowedMeasurements, load_root, verify_attestation

        if target != "TrentService.Decrypt":
            return 400, {"__type": "UnsupportedOperationException", "message": target}
        if not auth.startswith(f"AWS4-HMAC-SHA256 Credential={self.access_key}/") or not token:
            return self._deny("request not signed with the instance role's credentials")
        self.decrypts.append(req)
        recipient = req.get("Recipient")
        if not recipient:
            return self._deny("the key policy requires an attestation document (Recipient)")
        raw = base64.b64decode(recipient["AttestationDocument"])
        try:
            doc = parse_attestation_document(raw)
        except TeeformError as exc:
            return self._deny(f"invalid attestation document: {exc}")
        report = verify_attestation(doc, root=load_root(self.root_pem), allowed=[AllowedMeasurements("key policy", self.allowed)],
                                    at=dt.datetime.now(UTC))
        if not report.ok:
            failed = [c.name for c in report.checks if c.status == "fail"]
            return self._deny(f"attestation check failed: {', '.join(failed)}")
        out = self.moto.decrypt(CiphertextBlob=base64.b64decode(req["CiphertextBlob"]),
                                EncryptionContext=req.get("EncryptionContext", {}), KeyId=req["KeyId"])
        from cryptography.hazmat.primitives import serialization

        from teeform.nitro.kms_recipient import envelop_for_recipient

        pub = serialization.load_der_public_key(doc.public_key)  # type: ignore[arg-type]
        cms = envelop_for_recipient(out["Plaintext"], pub)  # type: ignore[arg-type]
        return 200, {"KeyId": out["KeyId"], "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                     "CiphertextForRecipient": base64.b64encode(cms).decode()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
