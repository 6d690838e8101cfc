"""The whole secret-delivery chain on one machine, the runtime running as it does in the image
(``python3 -m teeform.enclave_runtime ... -- AGENT``, a separate process):

    runtime --(wire, tcp here / vsock:3:9100 in AWS)--> parent credentials server --> fake IMDSv2
    runtime --> NSM stand-in (unix socket; documents from the test CA, tests/nitro_testca.py)
    runtime --> bridge 127.0.0.1 --> "vsock-proxy" stand-in --> KMS responder (Recipient) --> moto
    runtime --(exec)--> agent, secrets as env vars or tmpfs files

The parent-side servers listen on vsock CID 1 where the kernel has ``vsock_loopback``, and on
loopback TCP where it has not (this machine: binding CID 1 fails with EADDRNOTAVAIL and there is no
``modprobe``); nothing else changes between the two. The KMS responder
and why it is needed (moto ignores ``Recipient``) are described in ``test_enclave_runtime_fakes.py``.
The oracle for the secrets is the input of ``teeform seal`` (sealed with moto's real envelope
encryption), and the attestation document the runtime sent is checked by ``teeform verify attestation
--root`` itself.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import nitro_testca as tca
import pytest
from test_enclave_runtime_fakes import FakeImds, NsmResponder, RecipientKms
from test_seal import REGION, _manifest, key_arn, kms, moto_url  # noqa: F401  (fixtures)

from teeform.cli import main as cli_main
from teeform.enclave_runtime import bridge, parent
from teeform.enclave_runtime.transport import VMADDR_CID_LOCAL, Address, vsock_loopback_available
from teeform.seal import seal_secrets

REPO = Path(__file__).resolve().parents[1]
UTC = dt.UTC
SECRETS = {"OPENAI_API_KEY": "sk-live-4242", "DB_URL": "postgres://agent:pw@db/agent", "MULTI": "line1\nline2"}
AGENT_FILES = ("import json, os; d = os.environ['TEEFORM_SECRETS_DIR']; "
               "print(json.dumps({n: open(os.path.join(d, n)).read() for n in sorted(os.listdir(d))}))")


#: Real vsock between the runtime and the parent-side servers when the kernel can loop it back.
VSOCK = vsock_loopback_available()


def parent_listen() -> Address:
    """Where a parent-side server listens: vsock CID 1 (any free port) if possible, else loopback TCP."""
    return Address("vsock", VMADDR_CID_LOCAL, 0xFFFFFFFF) if VSOCK else Address("tcp", "127.0.0.1", 0)


class Lines(io.StringIO):
    """A text sink the log server writes to."""


@pytest.fixture
def shm():
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    d = Path(tempfile.mkdtemp(prefix="teeform-e2e-", dir="/dev/shm"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Chain:
    """Everything outside the runtime, started for one test."""

    def __init__(self, tmp: Path, moto: str, key: str, *, nsm_pcrs=None, tamper=False, expires_in=3600) -> None:
        self.tmp = tmp
        self.ca = tca.make_ca(dt.datetime.now(UTC))
        self.root = tmp / "test-root.pem"
        self.root.write_bytes(self.ca.root_pem())
        good = tca.default_pcrs()
        self.manifest = _manifest(tmp / "agent.manifest.json", good[0].hex())
        allowed = {f"PCR{i}": good[i].hex() for i in (0, 1, 2)}
        sealed = seal_secrets(SECRETS, kms=boto3.client("kms", region_name=REGION, endpoint_url=moto), key_id=key,
                              stack="dev", target="agent", manifest_sha256="ab" * 32)
        self.sealed = tmp / "sealed.json"
        self.sealed.write_text(sealed.to_json())
        self.imds = FakeImds(expires_in=expires_in)
        self.kms = RecipientKms(moto, REGION, self.root, allowed, self.imds.access_key)
        self.proxy = bridge.Bridge(parent_listen(), self.kms.address).start()  # vsock-proxy stand-in
        self.creds = parent.CredentialsServer(parent_listen(),
                                              parent.CredentialCache(parent.Imds(self.imds.url).credentials),
                                              self.sealed).start()
        self.nsm = NsmResponder(tmp / "nsm.sock", self.ca, nsm_pcrs or good, tamper=tamper)
        self.log_out = Lines()
        self.logs = parent.LogServer(parent_listen(), self.log_out)
        import threading

        threading.Thread(target=self.logs.serve_forever, daemon=True).start()

    def run(self, agent: list[str], *extra: str, log: bool = False) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # credentials come from the parent only
        env.update(PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
        cmd = [sys.executable, "-m", "teeform.enclave_runtime", "--parent", str(self.creds.address),
               "--kms-proxy", str(self.proxy.address), "--bridge-port", "0", "--kms-endpoint", "http://127.0.0.1:{port}",
               "--hosts-file", "none", "--nsm", str(self.nsm.address), "--no-loopback",
               "--log", str(self.logs.address) if log else "none", *extra, "--", *agent]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.tmp, timeout=120)

    def close(self) -> None:
        for x in (self.creds, self.proxy, self.logs):
            x.stop()
        for y in (self.nsm, self.kms, self.imds):
            y.close()


@pytest.fixture
def chain_factory(tmp_path, moto_url, key_arn):  # noqa: F811
    made: list[Chain] = []

    def make(**kw) -> Chain:
        made.append(Chain(tmp_path, moto_url, key_arn, **kw))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_env_delivery_end_to_end(chain_factory, tmp_path):
    chain = chain_factory()
    names = sorted(SECRETS)
    agent = [sys.executable, "-c", f"import os, json; print(json.dumps({{k: os.environ[k] for k in {names!r}}}))"]
    proc = chain.run(agent, "--delivery", "env")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == SECRETS
    assert proc.stderr.strip().splitlines() == [f"teeform-runtime: {len(SECRETS)} secret(s) delivered (env); starting {sys.executable}"]
    # the KMS call was the attested one, signed with the role credentials the parent served from IMDS
    (req,) = chain.kms.decrypts
    assert req["Recipient"]["KeyEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert chain.nsm.requests == 1 and chain.imds.credential_fetches == 1
    # the very document KMS was given passes `teeform verify attestation --root` against the manifest
    import base64

    doc = tmp_path / "sent.cbor"
    doc.write_bytes(base64.b64decode(req["Recipient"]["AttestationDocument"]))
    assert cli_main(["verify", "attestation", str(doc), "--root", str(chain.root), "--manifest", str(chain.manifest),
                     "--at", "now"]) == 0


def test_files_delivery_and_log_stream(chain_factory, shm):
    chain = chain_factory()
    target = shm / "secrets"
    proc = chain.run([sys.executable, "-c", AGENT_FILES], "--delivery", "files", "--secrets-dir", str(target), log=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # everything went to the parent's log port
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(chain.log_out.getvalue().splitlines()) < 2:
        time.sleep(0.05)
    lines = chain.log_out.getvalue().splitlines()
    assert lines[0] == f"enclave: teeform-runtime: {len(SECRETS)} secret(s) delivered (files); starting {sys.executable}"
    assert json.loads(lines[1].removeprefix("enclave: ")) == SECRETS
    assert sorted(p.name for p in target.iterdir()) == sorted(SECRETS)


def _assert_failed_cleanly(proc: subprocess.CompletedProcess[str], target: Path, *fragments: str) -> None:
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("teeform-runtime: error: ")
    for f in fragments:
        assert f in lines[0], lines[0]
    assert proc.stdout == ""  # the agent never ran
    assert not target.exists() and not [p for p in target.parent.iterdir() if p.name.startswith(".secrets.")]
    for v in SECRETS.values():
        assert v not in proc.stderr


def test_tampered_document_is_refused(chain_factory, shm):
    chain = chain_factory(tamper=True)
    proc = chain.run([sys.executable, "-c", AGENT_FILES], "--delivery", "files", "--secrets-dir", str(shm / "secrets"))
    _assert_failed_cleanly(proc, shm / "secrets", "KMS Decrypt failed: AccessDeniedException", "attestation check failed: signature")


def test_wrong_pcrs_are_refused(chain_factory, shm):
    chain = chain_factory(nsm_pcrs=tca.default_pcrs(pcr0=b"\x99" * 48))
    proc = chain.run([sys.executable, "-c", AGENT_FILES], "--delivery", "files", "--secrets-dir", str(shm / "secrets"))
    _assert_failed_cleanly(proc, shm / "secrets", "AccessDeniedException", "PCR0")


@pytest.mark.parametrize(("expires_in", "fragment"), [
    (-120, "refused 'credentials': the instance role credentials expired at"),  # the parent will not serve expired credentials
    (30, "the parent's credentials expire at"),  # valid, but not for long enough: the runtime refuses
])
def test_expired_credentials_are_refused(chain_factory, shm, expires_in, fragment):
    chain = chain_factory(expires_in=expires_in)
    proc = chain.run([sys.executable, "-c", AGENT_FILES], "--delivery", "files", "--secrets-dir", str(shm / "secrets"))
    _assert_failed_cleanly(proc, shm / "secrets", fragment)
    assert chain.kms.decrypts == [] and chain.nsm.requests == 0  # stopped before attesting or calling KMS
