"""`teeform seal` / `teeform unseal` for a GCP target, against a loopback fake of STS and Cloud KMS.

Only the HTTP boundary is faked: teeform's code, the real google-cloud-kms REST transport and urllib send
real HTTP requests to 127.0.0.1; the fake plays Google. Its STS evaluates the provider condition teeform
writes (components/gcp/cel.py) with cel-python against the claims of the presented token, as Google STS
evaluates ``attribute_condition``; its Cloud KMS wraps keys with AES-GCM under a server key and the AAD, and
decrypts only for the bearer token STS issued (the federated principal set holding cryptoKeyDecrypter).
The request shapes follow Google's REST references (STS ``v1/token`` form fields; Cloud KMS
``{name}:encrypt`` / ``:decrypt`` with base64 ``plaintext``, ``ciphertext``, ``additionalAuthenticatedData``).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import celpy
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from test_gcp_cel import token
from test_gcp_confidential_space import oci_manifest

from components.gcp.cel import attribute_condition
from teeform.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "projects/my-project/locations/europe-west4/keyRings/dev-cs/cryptoKeys/dev-cs-key"
PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/teeform-dev-cs/providers/attestation-verifier"
SA = "dev-cs-wl@my-project.iam.gserviceaccount.com"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token (the fake does not check Google's signature; it plays Google)."""
    return f"{b64u(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}.{b64u(json.dumps(claims).encode())}.{b64u(b'sig')}"


class FakeGoogle:
    """STS + Cloud KMS on 127.0.0.1 (module docstring). ``requests`` records (path, form/json, auth header)."""

    def __init__(self, condition: str) -> None:
        self.condition = condition
        self.master = AESGCM(os.urandom(32))
        self.requests: list[tuple[str, Any, str | None]] = []
        self.issued: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                auth = self.headers.get("Authorization")
                path = urllib.parse.urlsplit(self.path).path  # the REST transport adds ?$alt=json;enum-encoding=int
                if path == "/v1/token":
                    form = dict(urllib.parse.parse_qsl(raw.decode()))
                    fake.requests.append((path, form, auth))
                    return self._reply(*fake.sts(form))
                doc = json.loads(raw or b"{}")
                fake.requests.append((path, doc, auth))
                return self._reply(*fake.kms(path, doc, auth))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def sts(self, form: dict[str, str]) -> tuple[int, Any]:
        if (form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
                or form.get("audience") != f"//iam.googleapis.com/{PROVIDER}"
                or form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt"):
            return 400, {"error": "invalid_request", "error_description": "bad token-exchange request"}
        payload = form.get("subject_token", "").split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        env = celpy.Environment()
        try:
            ok = bool(env.program(env.compile(self.condition)).evaluate({"assertion": celpy.json_to_cel(claims)}))
        except celpy.CELEvalError:
            ok = False
        if not ok:
            return 400, {"error": "invalid_grant", "error_description": "The given credential is rejected by the attribute condition."}
        access = "fed-" + b64u(os.urandom(12))
        self.issued.add(access)
        return 200, {"access_token": access, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                     "token_type": "Bearer", "expires_in": 3600}

    def kms(self, path: str, doc: dict[str, Any], auth: str | None) -> tuple[int, Any]:
        name, _, verb = path.removeprefix("/v1/").partition(":")
        if name != KEY:
            return 404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}}
        aad = base64.b64decode(doc.get("additionalAuthenticatedData", ""))
        if verb == "encrypt":
            nonce = os.urandom(12)
            ct = nonce + self.master.encrypt(nonce, base64.b64decode(doc["plaintext"]), aad)
            return 200, {"name": KEY + "/cryptoKeyVersions/1", "ciphertext": base64.b64encode(ct).decode()}
        if verb == "decrypt":
            if not auth or auth.removeprefix("Bearer ") not in self.issued:
                return 403, {"error": {"code": 403, "message": "Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied",
                                       "status": "PERMISSION_DENIED"}}
            blob = base64.b64decode(doc["ciphertext"])
            try:
                plain = self.master.decrypt(blob[:12], blob[12:], aad)
            except Exception:  # noqa: BLE001 - any tampering: Cloud KMS says INVALID_ARGUMENT
                return 400, {"error": {"code": 400, "message": "Decryption failed", "status": "INVALID_ARGUMENT"}}
            return 200, {"plaintext": base64.b64encode(plain).decode()}
        return 404, {"error": {"code": 404, "message": "no such method", "status": "NOT_FOUND"}}


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    digest = "sha256:" + "2b" * 32
    fake = FakeGoogle(attribute_condition(service_account=SA, image_digests=[digest]))
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: teeform\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    m = oci_manifest(tmp_path / "build")
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(
        "config:\n  teeform:targets:\n    - name: cs\n      cloud: gcp\n      region: europe-west4\n"
        f"      tee: confidential-space\n      manifests: [{m}]\n      project: my-project\n"
        "      imageRepository: europe-west4-docker.pkg.dev/my-project/teeform/agent\n")
    (tmp_path / "secrets.env").write_text("OPENAI_API_KEY=sk-test-123\nDB_URL=postgres://u:p@h/db\n")
    return tmp_path


def _seal(project: Path, google: FakeGoogle) -> Path:
    out = project / "sealed.json"
    rc = main(["seal", "--stack", "dev", "--in", str(project / "secrets.env"), "--out", str(out), "--key-id", KEY,
               "--endpoint-url", google.url, "--project-dir", str(project)])
    assert rc == 0
    return out


def _unseal(sealed: Path, google: FakeGoogle, claims: dict[str, Any], tmp: Path) -> int:
    tok = tmp / "attestation_verifier_claims_token"
    tok.write_text(jwt(claims))
    return main(["unseal", "--in", str(sealed), "--endpoint-url", google.url, "--wif-provider", PROVIDER,
                 "--attestation-token", str(tok), "--sts-url", f"{google.url}/v1/token", "--format", "env"])


def test_seal_then_workload_unseal(project: Path, google: FakeGoogle, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    sealed = _seal(project, google)
    doc = json.loads(sealed.read_text())
    assert doc["key_id"] == KEY and oct(sealed.stat().st_mode & 0o777) == "0o600"
    assert doc["encryption_context"]["teeform:target"] == "cs"
    path, body, _ = google.requests[-1]
    assert path == f"/v1/{KEY}:encrypt"
    assert json.loads(base64.b64decode(body["additionalAuthenticatedData"])) == doc["encryption_context"]
    assert "sk-test-123" not in sealed.read_text()
    capsys.readouterr()
    good = token(google_service_accounts=[SA])
    assert _unseal(sealed, google, good, tmp_path) == 0
    assert capsys.readouterr().out == 'DB_URL="postgres://u:p@h/db"\nOPENAI_API_KEY="sk-test-123"\n'
    sts = [r for r in google.requests if r[0] == "/v1/token"][-1][1]
    assert sts["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert sts["requested_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    dec = google.requests[-1]
    assert dec[0] == f"/v1/{KEY}:decrypt" and (dec[2] or "").startswith("Bearer fed-")


@pytest.mark.parametrize(("why", "claims"), [
    ("another image", token(google_service_accounts=[SA], submods__container__image_digest="sha256:" + "4d" * 32)),
    ("a debug image", token(google_service_accounts=[SA], dbgstat="enabled")),
    ("a foreign service account", token(google_service_accounts=["x@evil.iam.gserviceaccount.com"])),
])
def test_sts_refuses_tokens_the_condition_rejects(project: Path, google: FakeGoogle, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str], why: str, claims: dict) -> None:
    sealed = _seal(project, google)
    capsys.readouterr()
    assert _unseal(sealed, google, claims, tmp_path) == 2, why
    err = capsys.readouterr().err
    assert "STS token exchange refused (HTTP 400): invalid_grant" in err and "Traceback" not in err
    assert not any(p.endswith(":decrypt") for p, _, _ in google.requests)


def test_without_federated_token_kms_denies_and_tampering_fails(project: Path, google: FakeGoogle, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    sealed = _seal(project, google)
    capsys.readouterr()
    rc = main(["unseal", "--in", str(sealed), "--endpoint-url", google.url])  # operator: no attestation
    err = capsys.readouterr().err
    assert rc == 2 and "Cloud KMS Decrypt failed: Forbidden" in err and "cryptoKeyDecrypter" in err  # in the hint
    doc = json.loads(sealed.read_text())
    doc["encryption_context"]["teeform:target"] = "other"
    sealed.write_text(json.dumps(doc))
    assert _unseal(sealed, google, token(google_service_accounts=[SA]), tmp_path) == 2
    assert "Cloud KMS Decrypt failed: BadRequest" in capsys.readouterr().err


def test_bad_key_name_and_missing_token(project: Path, google: FakeGoogle, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["seal", "--stack", "dev", "--in", str(project / "secrets.env"), "--out", str(project / "s.json"),
               "--key-id", "arn:aws:kms:eu-west-1:111122223333:key/x", "--endpoint-url", google.url,
               "--project-dir", str(project)])
    assert rc == 2 and "--key-id: not a Cloud KMS CryptoKey name" in capsys.readouterr().err
    assert not (project / "s.json").exists()
    sealed = _seal(project, google)
    capsys.readouterr()
    rc = main(["unseal", "--in", str(sealed), "--wif-provider", PROVIDER, "--attestation-token",
               str(tmp_path / "none"), "--sts-url", f"{google.url}/v1/token"])
    assert rc == 2 and "attestation token not found" in capsys.readouterr().err
