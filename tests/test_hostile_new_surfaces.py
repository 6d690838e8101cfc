"""Hostile-input campaign over the surfaces that landed after issue 7 (issue 7 item 3 applied to them).

Commands and file arguments: ``sign`` (MANIFEST, --key), ``verify manifest`` (MANIFEST, --key,
--envelopes, --signature, --rekor, --rekor-key), ``export tfvars`` (MANIFEST), ``preview diff``
(BASE, HEAD), ``rollover plan`` (OLD, NEW, the stack file), ``verify attestation`` of a NitroTPM
document (DOC, --manifest), ``unseal`` of GCP / Azure sealed files (--in, --attestation-token),
``build oci`` (--image and the layout's index.json / oci-layout), plus the Terraform state file of
``teeform:terraformState``. Each gets the same hostile kinds (:data:`KINDS`): a missing file, a
directory, ``/dev/zero``, an empty file, non-UTF-8 bytes, text that is not JSON, JSON nested 10,000
deep, a 5,000-digit integer, duplicate keys, wrong top-level types, lone surrogates, a huge string
and truncated base64. Stack settings of the new targets (aws nitro-tpm / sev-snp, azure, gcp,
alicloud; ``teeform:trustedManifestKeys``, ``teeform:terraformState``, ``manifests`` entries
``{path, until}``) are each given values of the wrong type, unknown keys and empty lists, starting
from the example stacks in ``stacks/``. ``preview diff`` also gets schema-valid documents whose
free-form ``inputs`` are hostile (a gzip bomb in user data, JSON-in-a-string nested deep, key
policies whose conditions multiply into billions of release sets, wrong types in a policy).

Expected for every input (docs/hostile-inputs.md): exit 2, one line on stderr ``error: <file>: ...``
naming the file, no traceback, no hang (SIGALRM after :data:`TIMEOUT` s), bounded memory (the
address space is capped at the current size + :data:`MEMORY_HEADROOM` while the command runs) and
nothing written to ``--out``. The oracle is the rule itself, not the code under test.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import hashlib
import json
import resource
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_support import REPO, fake_hex, write_fake_eif_manifest

from teeform.cli import main
from teeform.errors import TeeformError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TIMEOUT = 20
MEMORY_HEADROOM = 768 << 20


class Hang(Exception):
    """Raised by SIGALRM when one command runs longer than :data:`TIMEOUT`."""


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """Run the body with a wall-clock alarm and an address-space cap (restored afterwards)."""
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {TIMEOUT} s")

    with open("/proc/self/status") as fh:
        vm = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIMEOUT)
    resource.setrlimit(resource.RLIMIT_AS, (vm + MEMORY_HEADROOM, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_hostile(capsys: pytest.CaptureFixture[str], argv: list[str], bad: Path, outs: tuple[Path, ...] = ()) -> str:
    """Run ``argv``; assert exit 2, one ``error:`` line naming ``bad``, and nothing written to ``outs``."""
    before = {o: sorted(p.name for p in o.iterdir()) if o.is_dir() else None for o in outs}
    capsys.readouterr()
    t0 = time.monotonic()
    with bounded():
        rc = main(argv)
    elapsed = time.monotonic() - t0
    _out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("hint: ", "teeform: "))]
    assert "Traceback" not in err, err
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: "), line
    assert str(bad) in line or bad.name in line, f"the error does not name {bad}: {line}"
    assert elapsed < TIMEOUT
    for o, was in before.items():
        if was is None:
            assert not o.exists(), f"{o} was written"
        else:
            assert sorted(p.name for p in o.iterdir()) == was, f"{o} was written to"
    return line


# ------------------------------------------------------------------------------------- hostile kinds
DEEP = b"[" * 10_000 + b"]" * 10_000
BIGINT = b'{"a": ' + b"9" * 5000 + b"}"
HUGE_STRING = 17 << 20  # over every 16 MiB bound of the JSON inputs here

#: kind -> bytes (or a special marker handled by :func:`make_bad`)
KINDS: dict[str, bytes | None] = {
    "missing": None,
    "directory": None,
    "dev-zero": None,
    "empty": b"",
    "not-utf8": b'{"a": "\xff\xfe\x80"}',
    "not-json": b"this is : not [json {",
    "deep": DEEP,
    "bigint": BIGINT,
    "dup-keys": b'{"a": 1, "a": 2}',
    "list": b"[]",
    "string": b'"a string"',
    "int": b"5",
    "mapping": b'{"unexpected": {"x": []}}',
    "surrogate": b'{"a": "\\ud800"}',
    "huge-string": None,
    "truncated-b64": None,
    "oversized": None,
}

#: what "truncated base64" is for each file flavour: a length of 1 mod 4 after whitespace is removed,
#: which no base64 encoding has (RFC 4648 §4), padding or not
TRUNCATED_B64 = {
    "json": b'{"payload": "eyJhIjoxf", "signatures": [{"sig": "MEUCI"}]}',
    "jsonl": b'{"payload": "eyJhIjoxf", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "MEUCI"}]}\n',
    "pem": b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElWUhon39eAqzEC+/GP03oY4/MQg+g\n-----END PUBLIC KEY-----\n",
    "sig": b"MEUCIQDzMN3yaiO9sxLGAaSA9YD8rLwzvOaZKWa/bzkcjImUFAIgXLLGzClYUd1dGbuEiY3O/g/eiwQYlyxqLQalxjFmz",
    "cbor": b"hEShATgioFkQa",
    "token": b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIi=.c2ln",
}


def make_bad(d: Path, kind: str, flavour: str, name: str = "hostile.json") -> Path:
    """The hostile file of ``kind`` under ``d`` (``flavour`` picks the truncated-base64 form)."""
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    if kind == "missing":
        return p
    if kind == "directory":
        p.mkdir()
        return p
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "huge-string":
        with open(p, "wb") as fh:
            fh.write(b'"')
            fh.write(b"A" * HUGE_STRING)
            fh.write(b'"')
        return p
    if kind == "oversized":  # sparse: 1 GiB + 1, over every bound, costs no disk
        with open(p, "wb") as fh:
            fh.truncate((1 << 30) + 1)
        return p
    if kind == "truncated-b64":
        p.write_bytes(TRUNCATED_B64[flavour])
        return p
    data = KINDS[kind]
    assert data is not None
    if flavour == "jsonl" and data and not data.endswith(b"\n"):
        data += b"\n"
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------------------------ valid inputs
def _keypair(d: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    k = ec.generate_private_key(ec.SECP256R1())
    key, pub = d / "release.key", d / "release.pub"
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    pub.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pub


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid inputs for every command (one set per module: the hostile file replaces one of them)."""
    from teeform import signing

    d = tmp_path_factory.mktemp("world")
    img = write_fake_eif_manifest(d / "build", version="1")
    img2 = write_fake_eif_manifest(d / "build2", version="2")
    key, pub = _keypair(d)
    signing.sign_manifest(img.manifest_path, key)
    # a project for rollover plan: Pulumi.yaml + stacks/Pulumi.dev.yaml listing both manifests
    proj = d / "proj"
    (proj / "stacks").mkdir(parents=True)
    (proj / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    stack = {"config": {"teeform:environment": "dev", "teeform:targets": [{
        "name": "agent", "cloud": "aws", "region": "eu-west-1", "tee": "nitro-enclave",
        "manifests": [str(img.manifest_path)]}]}}
    (proj / "stacks" / "Pulumi.dev.yaml").write_text(yaml.safe_dump(stack))
    preview = {"format": "teeform-preview", "schemaVersion": 1, "projectDir": None, "clock": None, "stack": "dev",
               "stackFile": "stacks/Pulumi.dev.yaml", "policyConfig": None, "resources": [], "outputs": {},
               "violations": [], "policies": [], "manifests": []}
    (d / "preview.json").write_text(json.dumps(preview))
    return {"dir": d, "manifest": img.manifest_path, "manifest2": img2.manifest_path, "key": key, "pub": pub,
            "envelopes": signing.envelope_path(img.manifest_path), "proj": proj, "preview": d / "preview.json"}


# ------------------------------------------------------------------------------------ the CLI slots
#: slot -> (flavour, argv builder(world, bad, out) -> (argv, outputs that must stay unwritten))
Builder = Callable[[dict[str, Path], Path, Path], tuple[list[str], tuple[Path, ...]]]


def _sign_manifest(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["sign", str(bad), "--key", str(w["key"]), "--out", str(out / "e.jsonl")], (out / "e.jsonl",)


def _sign_key(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["sign", str(w["manifest"]), "--key", str(bad), "--out", str(out / "e.jsonl")], (out / "e.jsonl",)


def _verify_manifest(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["verify", "manifest", str(bad), "--key", str(w["pub"]), "--envelopes", str(w["envelopes"])], ()


def _verify_key(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["verify", "manifest", str(w["manifest"]), "--key", str(bad)], ()


def _verify_envelopes(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["verify", "manifest", str(w["manifest"]), "--key", str(w["pub"]), "--envelopes", str(bad)], ()


def _verify_signature(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["verify", "manifest", str(w["manifest"]), "--key", str(w["pub"]), "--signature", str(bad)], ()


def _verify_rekor(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["verify", "manifest", str(w["manifest"]), "--key", str(w["pub"]), "--rekor", str(bad)], ()


def _verify_rekor_key(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    entry = REPO / "tests" / "fixtures" / "rekor" / "bundle_v3_github.whl.tlog-entry.json"
    return ["verify", "manifest", str(w["manifest"]), "--key", str(w["pub"]), "--rekor", str(entry),
            "--rekor-key", str(bad)], ()


def _export_tfvars(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    out.mkdir(exist_ok=True)
    return ["export", "tfvars", str(bad), "--target", "aws/nitro-enclave", "--out", str(out)], (out,)


def _diff_base(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["preview", "diff", str(bad), str(w["preview"]), "--full-report", str(out / "r.md")], (out / "r.md",)


def _diff_head(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["preview", "diff", str(w["preview"]), str(bad), "--full-report", str(out / "r.md")], (out / "r.md",)


def _rollover_old(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["rollover", "plan", str(bad), str(w["manifest2"]), "--project-dir", str(w["proj"]),
            "--today", "2026-01-01"], ()


def _rollover_new(w: dict[str, Path], bad: Path, out: Path) -> tuple[list[str], tuple[Path, ...]]:
    return ["rollover", "plan", str(w["manifest"]), str(bad), "--project-dir", str(w["proj"]),
            "--today", "2026-01-01"], ()


CLI_SLOTS: dict[str, tuple[str, Builder]] = {
    "sign MANIFEST": ("json", _sign_manifest),
    "sign --key": ("pem", _sign_key),
    "verify manifest MANIFEST": ("json", _verify_manifest),
    "verify manifest --key": ("pem", _verify_key),
    "verify manifest --envelopes": ("jsonl", _verify_envelopes),
    "verify manifest --signature": ("sig", _verify_signature),
    "verify manifest --rekor": ("json", _verify_rekor),
    "verify manifest --rekor-key": ("pem", _verify_rekor_key),
    "export tfvars MANIFEST": ("json", _export_tfvars),
    "preview diff BASE": ("json", _diff_base),
    "preview diff HEAD": ("json", _diff_head),
    "rollover plan OLD": ("json", _rollover_old),
    "rollover plan NEW": ("json", _rollover_new),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("slot", list(CLI_SLOTS))
def test_file_arguments(world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        slot: str, kind: str) -> None:
    flavour, build = CLI_SLOTS[slot]
    if kind == "empty" and slot == "preview diff BASE":
        pass  # an empty BASE is an error without --allow-missing-base
    bad = make_bad(tmp_path / "in", kind, flavour, name={"jsonl": "e.intoto.jsonl", "pem": "k.pem", "sig": "m.sig"}
                   .get(flavour, "hostile.json"))
    out = tmp_path / "out"
    argv, outs = build(world, bad, out)
    run_hostile(capsys, argv, bad, outs)


# ----------------------------------------------------------------- verify attestation: NitroTPM documents
@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import datetime as dt

    import nitro_testca as tca
    from test_nitrotpm_verify import AT, mint_tpm, tpm_pcrs, vm_manifest

    d = tmp_path_factory.mktemp("tpm")
    ca = tca.make_ca(AT)
    assert isinstance(AT, dt.datetime)
    (d / "root.pem").write_bytes(ca.root_pem())
    (d / "doc.cbor").write_bytes(mint_tpm(ca, tpm_pcrs("a")))
    return {"root": d / "root.pem", "doc": d / "doc.cbor", "manifest": vm_manifest(d / "a.manifest.json", "a")}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("slot", ["DOC", "--manifest"])
def test_nitrotpm_verify_attestation(tpm: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     slot: str, kind: str) -> None:
    bad = make_bad(tmp_path, kind, "cbor" if slot == "DOC" else "json",
                   name="doc.b64" if slot == "DOC" else "hostile.manifest.json")
    doc, man = (bad, tpm["manifest"]) if slot == "DOC" else (tpm["doc"], bad)
    run_hostile(capsys, ["verify", "attestation", str(doc), "--manifest", str(man), "--root", str(tpm["root"]),
                         "--nitrotpm-pcrs", "4,12"], bad)


# ----------------------------------------------------------------- unseal: GCP and Azure sealed files
GCP_KEY = "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k"
AZURE_KEY = "https://vault1.vault.azure.net/keys/k1/0123456789abcdef0123456789abcdef"


def _sealed(key_id: str) -> bytes:
    from teeform.seal import CTX_MANIFEST, CTX_STACK, SealedSecrets, aad_fields

    sha = "0" * 64
    ctx = {CTX_STACK: "dev", CTX_MANIFEST: sha}
    return SealedSecrets(key_id, ctx, b"k" * 32, b"n" * 12, b"c" * 32, aad_fields("dev", key_id, sha)).to_json().encode()


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_unseal_sealed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], cloud: str, kind: str) -> None:
    bad = make_bad(tmp_path, kind, "json", name="sealed.json")
    out = tmp_path / "secrets.json"
    argv = ["unseal", "--in", str(bad), "--out", str(out)]
    if cloud == "gcp":
        argv += ["--wif-provider", "projects/1/locations/global/workloadIdentityPools/p/providers/q",
                 "--sts-url", "http://127.0.0.1:9/token", "--endpoint-url", "http://127.0.0.1:9"]
    run_hostile(capsys, argv, bad, (out,))


@pytest.mark.parametrize("kind", list(KINDS))
def test_unseal_gcp_attestation_token(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    sealed = tmp_path / "sealed.json"
    sealed.write_bytes(_sealed(GCP_KEY))
    bad = make_bad(tmp_path, kind, "token", name="token")
    out = tmp_path / "secrets.json"
    run_hostile(capsys, ["unseal", "--in", str(sealed), "--out", str(out), "--wif-provider",
                         "projects/1/locations/global/workloadIdentityPools/p/providers/q", "--attestation-token",
                         str(bad), "--sts-url", "http://127.0.0.1:9/token", "--endpoint-url", "http://127.0.0.1:9"],
                bad, (out,))


def test_sealed_fixture_is_readable() -> None:
    """The valid sealed files the unseal cases start from parse (so the cases test the hostile part)."""
    from teeform.seal import SealedSecrets

    for k in (GCP_KEY, AZURE_KEY):
        assert SealedSecrets.from_json(_sealed(k)).key_id == k


# ----------------------------------------------------------------- build oci: the layout's JSON files
def _oci_layout(d: Path) -> Path:
    """A one-layer OCI image layout (image-spec v1.1 ``image-layout.md``) written by hand."""
    import io
    import tarfile

    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> tuple[str, int]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return f"sha256:{h}", len(data)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("app")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    layer = buf.getvalue()
    ld, ls = put(layer)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/app"]},
                      "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
    cd, cs = put(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}]}).encode()
    md, ms = put(man)
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}]}))
    return d


def test_oci_layout_fixture_builds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The layout the build-oci cases start from is accepted (so they test the hostile file)."""
    img = _oci_layout(tmp_path / "img")
    assert main(["build", "oci", "--image", str(img), "--out", str(tmp_path / "out"), "--name", "x"]) == 0, \
        capsys.readouterr().err


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("missing", "dev-zero")])
@pytest.mark.parametrize("member", ["index.json", "oci-layout"])
def test_build_oci_layout_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], member: str, kind: str) -> None:
    img = _oci_layout(tmp_path / "img")
    (img / member).unlink()
    bad = make_bad(img, kind, "json", name=member)
    out = tmp_path / "out"
    run_hostile(capsys, ["build", "oci", "--image", str(img), "--out", str(out), "--name", "x"], bad, (out,))


@pytest.mark.parametrize("kind", ["missing", "dev-zero", "empty", "not-json"])
def test_build_oci_image_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    bad = make_bad(tmp_path, kind, "json", name="image")
    out = tmp_path / "out"
    run_hostile(capsys, ["build", "oci", "--image", str(bad), "--out", str(out)], bad, (out,))


# ----------------------------------------------------------------- teeform:terraformState's file
@pytest.mark.parametrize("kind", [*KINDS, "outputs-list", "output-not-a-mapping"])
def test_terraform_state_file(tmp_path: Path, kind: str) -> None:
    from teeform.preview.clouds.terraform import local_state_outputs

    extra = {"outputs-list": b'{"version": 4, "outputs": []}',
             "output-not-a-mapping": b'{"version": 4, "outputs": {"vpc_id": "vpc-1"}}'}
    if kind in extra:
        bad = tmp_path / "terraform.tfstate"
        bad.write_bytes(extra[kind])
    else:
        bad = make_bad(tmp_path, kind, "json", name="terraform.tfstate")
    with bounded(), pytest.raises(TeeformError) as ei:
        local_state_outputs(str(bad))
    assert str(bad) in ei.value.render() or bad.name in ei.value.render(), ei.value.render()
    assert "\n" not in ei.value.render()


# ----------------------------------------------------------------- build vm-image --platform-modules
@pytest.mark.parametrize("value", ["nosuch", "hyperv,,", "hyperv,nosuch", "\udcff", "x" * 100_000, ","])
def test_platform_modules_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    root = tmp_path / "rootfs"
    (root / "sbin").mkdir(parents=True)
    (root / "sbin" / "init").write_text("#!/bin/sh\n")
    small = tmp_path / "small"
    small.write_bytes(b"MZ")
    out = tmp_path / "out"
    capsys.readouterr()
    with bounded():
        rc = main(["build", "vm-image", "--rootfs", str(root), "--kernel", str(small), "--stub", str(small),
                   "--out", str(out), "--platform-modules", value])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("hint: ", "teeform: "))]
    assert len(lines) == 1 and "--platform-modules" in lines[0], err
    assert not out.exists()


# ----------------------------------------------------------------- preview diff: hostile inputs inside valid documents
def _doc(resources: list[dict[str, Any]], manifests: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"format": "teeform-preview", "schemaVersion": 1, "projectDir": None, "clock": None, "stack": "dev",
            "stackFile": "s", "policyConfig": None, "resources": resources, "outputs": {}, "violations": [],
            "policies": [], "manifests": manifests or []}


def _res(inputs: dict[str, Any], typ: str = "aws:kms/key:Key", name: str = "k") -> dict[str, Any]:
    return {"type": typ, "name": name, "urn": f"urn:pulumi:dev::teeform::{typ}::{name}", "custom": True,
            "summary": [], "inputs": inputs}


def _bomb() -> str:
    return base64.b64encode(gzip.compress(b"\n" * (1 << 30), compresslevel=9)).decode()


def _policy(cond: Any, actions: Any = "kms:Decrypt") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "R", "Effect": "Allow", "Action": actions,
                                                              "Condition": cond}]})


PREVIEW_INPUTS: dict[str, Callable[[], dict[str, Any]]] = {
    "userData gzip bomb": lambda: _doc([_res({"userData": _bomb()}, "aws:ec2/launchTemplate:LaunchTemplate", "lt")]),
    "JSON string nested 10,000 deep": lambda: _doc([_res({"tags": {"x": "[" * 10_000 + "]" * 10_000}})]),
    "JSON string with a 5,000-digit integer": lambda: _doc([_res({"tags": {"x": "[" + "9" * 5000 + "]"}})]),
    "JSON strings inside JSON strings": lambda: _doc([_res({"tags": {"x": _json_chain(24)}})]),
    "key policy multiplying into 10^20 release sets": lambda: _doc([_res({"policy": _policy(
        {"StringEqualsIgnoreCase": {f"kms:RecipientAttestation:PCR{i}": [fake_hex(f"{i}{j}") for j in range(100)]
                                    for i in range(10)}})})]),
    "key policy Condition a list": lambda: _doc([_res({"policy": _policy([1, 2])})]),
    "key policy Condition operator a list": lambda: _doc([_res({"policy": _policy({"StringEquals": [1]})})]),
    "key policy Action an integer": lambda: _doc([_res({"policy": _policy(
        {"StringEquals": {"kms:RecipientAttestation:PCR0": "ab"}}, actions=5)})]),
    "key policy Statement a string": lambda: _doc([_res({"policy": json.dumps({"Statement": "x"})})]),
    "key policy a list": lambda: _doc([_res({"policy": [1, 2]})]),
}


def _json_chain(levels: int) -> str:
    s = "[" * 60 + "1" + "]" * 60
    for _ in range(levels):
        s = json.dumps([[s]])
    return s


@pytest.mark.parametrize("case", list(PREVIEW_INPUTS))
def test_preview_diff_hostile_inputs(world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     case: str) -> None:
    """Schema-valid preview documents whose free-form parts are hostile: the diff is either made (exit 0)
    or refused with one line naming the file (exit 2); never a traceback, hang or memory blow-up."""
    head = tmp_path / "head.json"
    head.write_text(json.dumps(PREVIEW_INPUTS[case]()))
    capsys.readouterr()
    with bounded():
        rc = main(["preview", "diff", str(world["preview"]), str(head), "--json"])
    _out, err = capsys.readouterr()
    assert "Traceback" not in err and rc in (0, 2), (rc, err)
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("hint: ")]
        assert len(lines) == 1 and str(head) in lines[0], err


# ----------------------------------------------------------------- stack settings of the new targets
NEW_STACKS = ["nitro-tpm", "aws-snp", "azure", "gcp", "alicloud"]
COMMON = {"name", "cloud", "region", "tee"}


def _wrong_values(v: Any) -> list[Any]:
    """Values of another type than ``v`` (bool is not an int; a date string stays a string)."""
    pool: list[Any] = ["a string", 7, True, ["x"], {"unexpected": 1}, None]
    out = [x for x in pool if type(x) is not type(v) and x is not None]
    return out


#: (setting, type) pairs that are documented unions, not coercions: one manifest or one trusted key may
#: be a plain string (``pulumi config set KEY VALUE`` stores a string; docs/hostile-inputs.md),
#: and ``logRedirect`` takes YAML ``true``/``false`` as the metadata values "true"/"false" (docs/gcp.md)
DOCUMENTED_UNIONS = {("manifests", str), ("teeform:trustedManifestKeys", str), ("logRedirect", bool)}


def _setting_cases() -> list[tuple[str, tuple[Any, ...], Any, str]]:
    """(stack, path to the value, replacement, field the error must name) for every setting."""
    cases: list[tuple[str, tuple[Any, ...], Any, str]] = []
    for stack in NEW_STACKS:
        doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
        cfg = doc["config"]
        for top in ("teeform:trustedManifestKeys", "teeform:terraformState"):
            if top in cfg:
                for w in _wrong_values(cfg[top]):
                    if (top, type(w)) in DOCUMENTED_UNIONS:
                        continue
                    cases.append((stack, ("config", top), w, top))
        for i, t in enumerate(cfg["teeform:targets"]):
            base = f"teeform:targets[{i}]"
            cases.append((stack, ("config", "teeform:targets", i, "noSuchSetting"), 1, f"{base}.noSuchSetting"))
            for k, v in t.items():
                if k in COMMON:
                    continue
                fld = f"{base}.{k}"
                for w in _wrong_values(v):
                    if (k, type(w)) in DOCUMENTED_UNIONS:
                        continue
                    cases.append((stack, ("config", "teeform:targets", i, k), w, fld))
                if isinstance(v, list):
                    cases.append((stack, ("config", "teeform:targets", i, k), [], fld))
                    if v:
                        for w in _wrong_values(v[0]):
                            if k == "manifests" and isinstance(w, dict):
                                continue  # {path, until} entries: test_manifest_entry_cases
                            cases.append((stack, ("config", "teeform:targets", i, k, 0), w, f"{fld}[0]"))
                if isinstance(v, dict):
                    cases.append((stack, ("config", "teeform:targets", i, k, "noSuchKey"), 1, f"{fld}"))
                    for k2, v2 in v.items():
                        for w in _wrong_values(v2):
                            cases.append((stack, ("config", "teeform:targets", i, k, k2), w, f"{fld}.{k2}"))
    return cases


SETTING_CASES = _setting_cases()


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


@pytest.mark.parametrize("stack, path, value, field", SETTING_CASES,
                         ids=[f"{s}:{'.'.join(map(str, p[1:]))}={type(v).__name__}" for s, p, v, _f in SETTING_CASES])
def test_new_stack_settings_are_type_checked(tmp_path: Path, stack: str, path: tuple[Any, ...], value: Any,
                                             field: str) -> None:
    from teeform.stack import load_stack

    doc = copy.deepcopy(yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text()))
    _set(doc, path, value)
    f = tmp_path / f"Pulumi.{stack}.yaml"
    f.write_text(yaml.safe_dump(doc))
    with bounded(), pytest.raises(TeeformError) as ei:
        load_stack(REPO, stack, f)
    msg = ei.value.render()
    assert str(f) in msg and field in msg, msg
    assert "\n" not in msg


def test_example_stacks_load() -> None:
    """The example stacks the settings cases start from are valid (so each case tests its one change)."""
    from teeform.stack import load_stack

    for stack in NEW_STACKS:
        assert load_stack(REPO, stack).targets


@pytest.mark.parametrize("entry, field", [
    ({"path": "m.json", "until": ["2026-01-01"]}, "manifests[0].until"),
    ({"path": "m.json", "until": {"y": 2026}}, "manifests[0].until"),
    ({"path": "m.json", "until": True}, "manifests[0].until"),
    ({"path": ["m.json"]}, "manifests[0].path"),
    ({"path": {"p": 1}}, "manifests[0].path"),
    ({"path": "m.json", "until": "2026-01-01", "extra": 1}, "manifests[0]"),
    ({}, "manifests[0]"),
])
def test_manifest_entry_cases(tmp_path: Path, entry: Any, field: str) -> None:
    from teeform.stack import StackConfig

    values = {"targets": [{"name": "a", "cloud": "gcp", "region": "europe-west4", "tee": "confidential-space",
                           "manifests": [entry], "project": "my-project-1", "zone": "europe-west4-a",
                           "imageRepository": "europe-west4-docker.pkg.dev/p/r/i"}]}
    with pytest.raises(TeeformError) as ei:
        StackConfig.from_values(values, stack="dev", source="s.yaml", project_dir=tmp_path)
    assert f"teeform:targets[0].{field}" in ei.value.render(), ei.value.render()


def test_manifest_entry_with_a_lone_surrogate_in_the_stack_file(tmp_path: Path) -> None:
    """YAML's ``\\uDCFF`` escape makes a lone surrogate; the stack file is refused naming the entry."""
    from teeform.stack import load_stack

    text = (REPO / "stacks" / "Pulumi.gcp.yaml").read_text()
    f = tmp_path / "Pulumi.gcp.yaml"
    f.write_text(text.replace("manifests: [build/demo-oci/openclaw-agent.manifest.json]",
                              'manifests: [{path: "build/\\uDCFF.json", until: 2026-12-31}]', 1))
    assert f.read_text() != text
    with pytest.raises(TeeformError) as ei:
        load_stack(REPO, "gcp", f)
    assert str(f) in ei.value.render() and "manifests[0].path" in ei.value.render() and "surrogate" in ei.value.render()


# ----------------------------------------------------------------- the shared readers these cases exposed
def test_json_depth_of_a_16_mib_string_is_constant_memory() -> None:
    """``safeload.json_depth``'s old pattern ``"(?:[^"\\]|\\.)*"`` kept one backtracking entry per
    character (2 GiB and 8 s for a 17 MiB string, measured with ru_maxrss); every JSON reader runs it."""
    from teeform.safeload import json_depth, loads_json

    data = b'["' + b"A" * (16 << 20) + b'"]'
    t0 = time.monotonic()
    with bounded():
        assert json_depth(data) == 1
        assert len(loads_json(data, source="big.json")[0]) == 16 << 20
    assert time.monotonic() - t0 < 5


def test_json_depth_of_an_unterminated_string_is_linear() -> None:
    """An unterminated string full of escaped quotes: each ``\\"`` used to start a new scan to the end
    (20,000 of them took 4 s, 8 MiB would take days). The scan now stops at the first quote that opens
    no terminated string, and the parser reports the invalid JSON."""
    from teeform.safeload import json_depth, loads_json

    data = b'["' + b'\\"' * (4 << 20)
    t0 = time.monotonic()
    with bounded():
        assert json_depth(data) == 1
        with pytest.raises(TeeformError, match="bad.json"):
            loads_json(data, source="bad.json")
    assert time.monotonic() - t0 < 5


def test_json_depth_still_counts_brackets_outside_strings_only() -> None:
    from teeform.safeload import json_depth

    assert json_depth(b'[[["]]]]]]", "\\"[[[["]]]') == 3
    assert json_depth(b'{"a": {"b": ["\\\\", {"c": 1}]}}') == 4
    assert json_depth(b'[[[[ "unterminated') == 4


def test_read_limited_costs_the_file_not_the_limit(tmp_path: Path) -> None:
    """``read_limited`` used ``read(limit + 1)``, which allocates the whole limit up front: 1 GiB of
    address space for every small preview document (``PREVIEW_JSON_LIMIT`` was 1 GiB)."""
    from teeform.safeload import read_limited

    small = tmp_path / "small.json"
    small.write_bytes(b"{}")
    with bounded():
        assert read_limited(small, 4 << 30, what="document") == b"{}"


# ----------------------------------------------------------------- wrong types at every field of signed documents
def _paths(v: Any, p: tuple[Any, ...] = (), every: bool = False) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every node below the top (the first element of each list only, or with
    ``every`` all elements)."""
    if isinstance(v, dict):
        for k, x in v.items():
            yield (*p, k), x
            yield from _paths(x, (*p, k), every)
    elif isinstance(v, list) and v:
        for i, x in enumerate(v if every else v[:1]):
            yield (*p, i), x
            yield from _paths(x, (*p, i), every)


def _mutations(doc: Any, every: bool = False) -> list[tuple[str, Any]]:
    """(id, mutated copy) for every field: each value of another type, and the field removed."""
    out: list[tuple[str, Any]] = []
    for path, v in _paths(doc, every=every):
        name = ".".join(map(str, path))
        for w in _wrong_values(v):
            d = copy.deepcopy(doc)
            _set(d, path, w)
            out.append((f"{name}={type(w).__name__}", d))
        if isinstance(path[-1], str):
            d = copy.deepcopy(doc)
            parent = d
            for q in path[:-1]:
                parent = parent[q]
            del parent[path[-1]]
            out.append((f"{name}=absent", d))
    return out


@pytest.fixture(scope="module")
def rekor(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from test_signing_rekor import _synthetic_entry

    d = tmp_path_factory.mktemp("rekor")
    img = write_fake_eif_manifest(d / "build")
    key, pub = _keypair(d)
    entry, log_pub = _synthetic_entry(d, img.manifest_path, key, pub)
    return {"manifest": img.manifest_path, "pub": pub, "log_pub": log_pub, "doc": json.loads(entry.read_text())}


#: fields verify manifest does not read: a wrong type there changes nothing (Rekor's own, informational)
REKOR_UNREAD = ("kindVersion", "logId")


def test_rekor_entry_mutations(rekor: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every field of a valid stored Rekor entry given another type or removed: exit 2 (unusable) or 1
    (a check failed, e.g. a proof that no longer hashes to the root), one line naming the entry file,
    never a traceback; the untouched entry verifies (exit 0)."""
    f = tmp_path / "entry.json"
    base = ["verify", "manifest", str(rekor["manifest"]), "--key", str(rekor["pub"]), "--rekor", str(f),
            "--rekor-key", str(rekor["log_pub"]), "--signature", str(rekor["manifest"]) + ".sig"]
    f.write_text(json.dumps(rekor["doc"]))
    assert main(base) == 0, capsys.readouterr().err
    failures: list[str] = []
    cases = _mutations(rekor["doc"])
    for name, doc in cases:
        f.write_text(json.dumps(doc))
        capsys.readouterr()
        with bounded():
            try:
                rc = main(base)
            except Exception as exc:  # noqa: BLE001 - the campaign collects every crash
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("hint: ")]
        if name.startswith(REKOR_UNREAD) and rc == 0:
            continue
        if name.endswith("=int") and rc == 0:
            continue  # integers may be JSON numbers or decimal strings (rekor.py _int; Rekor's API uses both)
        if rc not in (1, 2) or len(lines) != 1 or str(f) not in lines[0]:
            failures.append(f"{name}: rc={rc} {err!r}")
    assert len(cases) > 40
    assert not failures, "\n".join(failures)


def test_dsse_envelope_mutations(world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every field of each valid DSSE envelope line given another type or removed: exit 2 (malformed)
    or 1 (no pinned signature verifies), one line naming the envelopes file, never a traceback."""
    lines_in = [json.loads(ln) for ln in world["envelopes"].read_text().splitlines() if ln.strip()]
    f = tmp_path / "e.intoto.jsonl"
    base = ["verify", "manifest", str(world["manifest"]), "--key", str(world["pub"]), "--envelopes", str(f)]
    failures: list[str] = []
    n = 0
    for i, env in enumerate(lines_in):
        for name, doc in _mutations(env):
            n += 1
            rest = [json.dumps(x) for j, x in enumerate(lines_in) if j != i]
            f.write_text("\n".join([json.dumps(doc), *rest]) + "\n")
            capsys.readouterr()
            with bounded():
                try:
                    rc = main(base)
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"line {i + 1} {name}: {type(exc).__name__}: {exc}")
                    continue
            err = capsys.readouterr().err
            lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("hint: ")]
            if name.startswith("signatures.0.keyid") and rc == 0:
                continue  # keyid is a hint only (teeform trusts key values, test_signing.py)
            if rc not in (1, 2) or len(lines) != 1 or str(f) not in lines[0]:
                failures.append(f"line {i + 1} {name}: rc={rc} {err!r}")
    assert n > 20
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("field", ["logIndex", "integratedTime", "inclusionProof.logIndex", "inclusionProof.treeSize"])
@pytest.mark.parametrize("value", ["\u00b25", "\u0664\u0662", "9" * 21, "-1", "1e3", " 42", 7.0])
def test_rekor_integers_that_are_not_ascii_decimals(rekor: dict[str, Any], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], field: str, value: Any) -> None:
    """``"²5".isdigit()`` is true and ``int("²5")`` raises: integers are ASCII decimal digits only."""
    doc = copy.deepcopy(rekor["doc"])
    _set(doc, tuple(field.split(".")), value)
    f = tmp_path / "entry.json"
    f.write_text(json.dumps(doc))
    line = run_hostile(capsys, ["verify", "manifest", str(rekor["manifest"]), "--key", str(rekor["pub"]), "--rekor",
                                str(f), "--rekor-key", str(rekor["log_pub"])], f)
    assert field.split(".")[-1] in line, line


SDE_VALUES = ["\u00b2", "\u0663", "99999999999999999999", "253402300800", "-1", "1e9", " 1"]


@pytest.mark.parametrize("value", SDE_VALUES)
def test_source_date_epoch_that_is_not_an_ascii_time(world: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """``rollover plan`` (the clock) and ``build oci`` (the manifest time) read $SOURCE_DATE_EPOCH: an
    integer in ASCII digits (reproducible-builds.org spec) up to 9999-12-31T23:59:59Z, else exit 2."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    for argv, outs in (
        (["rollover", "plan", str(world["manifest"]), str(world["manifest2"]), "--project-dir", str(world["proj"])], ()),
        (["build", "oci", "--image", str(_oci_layout(tmp_path / "img")), "--out", str(tmp_path / "out"), "--name", "x"],
         (tmp_path / "out",)),
    ):
        capsys.readouterr()
        with bounded():
            rc = main(argv)
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("hint: ")]
        assert rc == 2 and len(lines) == 1 and "SOURCE_DATE_EPOCH" in lines[0] and "Traceback" not in err, (argv, err)
        assert all(not o.exists() for o in outs)


@pytest.mark.parametrize("value", SDE_VALUES)
def test_policy_clock_ignores_a_source_date_epoch_it_cannot_read(value: str) -> None:
    """The policy pack's clock (policies/teeform_policies/rollover.py) falls back to the system clock."""
    import importlib
    import sys

    sys.path.insert(0, str(REPO / "policies"))
    try:
        today = importlib.import_module("teeform_policies.rollover").today
    finally:
        sys.path.remove(str(REPO / "policies"))
    d, where = today({}, {"SOURCE_DATE_EPOCH": value})
    assert where == "system clock (UTC)"


# ----------------------------------------------------------------- preview diff: every field of a real preview document
@pytest.fixture(scope="module")
def real_preview(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``teeform preview --json`` of a one-target stack with two allowed manifests (one in a rollover window)."""
    from pulumi_support import nitro_target, write_stack_file

    from teeform.preview import run_preview, to_json

    d = tmp_path_factory.mktemp("real-preview")
    a = write_fake_eif_manifest(d / "a", version="1")
    b = write_fake_eif_manifest(d / "b", version="2")
    t = nitro_target([b.manifest_path])
    t["manifests"] = [str(b.manifest_path), {"path": str(a.manifest_path), "until": "2026-01-31"}]
    stack = write_stack_file(d / "Pulumi.dev.yaml", [t])
    doc = to_json(run_preview(REPO, "dev", stack_file=stack, today="2026-01-01"))
    base = copy.deepcopy(doc)
    base["manifests"] = base["manifests"][:1]  # so the diff has release sets and windows to compare
    (d / "base.json").write_text(json.dumps(base))
    return {"doc": json.loads(json.dumps(doc)), "base": d / "base.json"}


def test_preview_document_mutations(real_preview: dict[str, Any], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Every field (down to 4 levels, in every resource, manifest and violation) of a real preview document given another type or removed, as HEAD:
    the diff is made (exit 0: the field is free-form) or refused with one line naming the file (exit 2);
    never a traceback, hang or memory blow-up."""
    head = tmp_path / "head.json"
    base = ["preview", "diff", str(real_preview["base"]), str(head), "--json"]
    head.write_text(json.dumps(real_preview["doc"]))
    assert main(base) == 0, capsys.readouterr().err
    failures: list[str] = []
    # every second mutation (about 1,100 documents, ~10 s on a shared machine)
    cases = [(n, d) for n, d in _mutations(real_preview["doc"], every=True) if n.count(".") <= 3][::2]
    for name, doc in cases:
        head.write_text(json.dumps(doc))
        capsys.readouterr()
        with bounded():
            try:
                rc = main(base)
            except Exception as exc:  # noqa: BLE001 - the campaign collects every crash
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("hint: ")]
        if rc == 0:
            continue
        if rc != 2 or len(lines) != 1 or str(head) not in lines[0]:
            failures.append(f"{name}: rc={rc} {err[:300]!r}")
    assert len(cases) > 500
    print(f"{len(cases)} mutated preview documents")
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures[:60])


# ----------------------------------------------------------------- keys pinned in the stack, NitroTPM PCR lists
@pytest.mark.parametrize("kind", list(KINDS))
def test_trusted_manifest_key_files(world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    kind: str) -> None:
    """``verify manifest --stack S`` reads each ``teeform:trustedManifestKeys`` file: a hostile one is
    exit 2, one line naming the stack file, the field and the key file."""
    bad = make_bad(tmp_path / "keys", kind, "pem", name="release.pub")
    proj = tmp_path / "proj"
    (proj / "stacks").mkdir(parents=True)
    (proj / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    doc = yaml.safe_load((world["proj"] / "stacks" / "Pulumi.dev.yaml").read_text())
    doc["config"]["teeform:trustedManifestKeys"] = [str(bad)]
    (proj / "stacks" / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    line = run_hostile(capsys, ["verify", "manifest", str(world["manifest"]), "--stack", "dev", "--project-dir",
                                str(proj)], bad)
    assert "teeform:trustedManifestKeys[0]" in line, line


@pytest.mark.parametrize("value", ["\u00b2", "\u0664", "4," * 50_000, "4,4", "-1", "24", "4;12", "", " , ", "9" * 5000])
def test_nitrotpm_pcr_lists(tpm: dict[str, Path], capsys: pytest.CaptureFixture[str], value: str) -> None:
    capsys.readouterr()
    with bounded():
        rc = main(["verify", "attestation", str(tpm["doc"]), "--manifest", str(tpm["manifest"]), "--root",
                   str(tpm["root"]), "--nitrotpm-pcrs", value])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("hint: ")]
    assert rc == 2 and len(lines) == 1 and "--nitrotpm-pcrs" in lines[0] and "Traceback" not in err, (rc, err)


# ----------------------------------------------------------------- hostile Google STS replies (gcp unseal)
STS_REPLIES: dict[str, tuple[int, bytes]] = {
    "deep (200)": (200, DEEP),
    "deep (400)": (400, DEEP),
    "5,000-digit integer": (200, b'{"access_token": ' + b"9" * 5000 + b"}"),
    "duplicate access_token": (200, b'{"access_token": "a", "access_token": "b"}'),
    "lone surrogate": (200, b'{"access_token": "\\ud800"}'),
    "header injection": (200, b'{"access_token": "ya29.a\\r\\nX-Injected: 1"}'),
    "token an integer": (200, b'{"access_token": 5}'),
    "a list": (200, b"[]"),
    "not UTF-8": (200, b'{"access_token": "\xff"}'),
    "10 MiB": (200, b'{"access_token": "' + b"a" * (10 << 20) + b'"}'),
    "error body a list (403)": (403, b"[1, 2]"),
    "error body with a 1 MiB description (400)": (400, b'{"error": "x", "error_description": "' + b"d" * (1 << 20) + b'"}'),
}


@pytest.fixture(scope="module")
def sts_server() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    """A loopback HTTP server answering each POST with the reply set in the returned dict."""
    import http.server
    import threading

    current: dict[str, tuple[int, bytes]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, body = current["reply"]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1/token", current
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("case", list(STS_REPLIES))
def test_hostile_sts_replies(sts_server: tuple[str, dict[str, tuple[int, bytes]]], case: str) -> None:
    """Google STS's reply is parsed with safeload's bounds and the access token must be RFC 6750
    ``b64token`` characters (it becomes an Authorization header): one-line TeeformError, no traceback."""
    from teeform.seal_gcp import sts_exchange

    url, current = sts_server
    current["reply"] = STS_REPLIES[case]
    with bounded(), pytest.raises(TeeformError) as ei:
        sts_exchange("a.b.c", "projects/1/locations/global/workloadIdentityPools/p/providers/q", sts_url=url, timeout=10)
    msg = ei.value.render()
    assert "STS" in msg and "\n" not in msg and len(msg) < 1000, msg[:300]
