"""Test helpers for the Pulumi program, components, policies and `teeform preview`.

Every test builds its own inputs in ``tmp_path``: a small dummy ``.eif`` file and a valid manifest
whose ``artifact`` size/digests match that file and whose measurements are made-up hex (derived from
a label, so two manifests differ), plus a stack file pointing at them with absolute paths. Nothing
depends on ``build/demo`` existing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]


def fake_hex(label: str, n: int = 96) -> str:
    """Made-up lowercase hex of ``n`` digits (SHA-384/256 of ``label``): test data, not a golden value."""
    h = hashlib.sha384(label.encode()).hexdigest() if n == 96 else hashlib.sha256(label.encode()).hexdigest()
    return h[:n]


@dataclass(frozen=True)
class FakeImage:
    manifest_path: Path
    eif_path: Path
    manifest: Manifest


def write_fake_eif_manifest(
    directory: Path,
    name: str = "openclaw-agent",
    *,
    version: str = "1.0.0",
    label: str | None = None,
    eif_bytes: int = 4096,
    pcr8: bool = False,
    debug: bool = False,
    write_eif: bool = True,
    artifact_sha384: bool = False,
    schema_version: int | None = None,
) -> FakeImage:
    """Write ``<name>.eif`` (dummy bytes) and ``<name>.manifest.json`` into ``directory``.

    The manifest is a schema-2 EIF manifest without ``artifact.sha384``, as ``teeform build eif`` writes
    them; ``artifact_sha384=True`` also records the file's SHA-384, ``schema_version=1`` writes an old
    (schema 1) manifest, which needs ``artifact_sha384=True``.
    """
    label = label or f"{name}@{version}"
    directory.mkdir(parents=True, exist_ok=True)
    eif = directory / f"{name}.eif"
    eif.write_bytes(hashlib.shake_256(label.encode()).digest(eif_bytes))
    artifact = Artifact.from_file(eif)
    if not artifact_sha384:
        artifact = dataclasses.replace(artifact, sha384=None)
    if not write_eif:
        eif.unlink()
    meas = {k: ("0" * 96 if debug else fake_hex(f"{label}:{k}")) for k in ("PCR0", "PCR1", "PCR2")}
    meas["ImageSha384"] = meas["PCR0"]
    if pcr8:
        meas["PCR8"] = fake_hex(f"{label}:PCR8")
    m = Manifest(
        kind=ArtifactKind.EIF, name=name, version=version, artifact=artifact, measurements=meas,
        inputs=(InputDigest("kernel", "bzImage", fake_hex("kernel", 64), 1),), builder=Builder("teeform", "test"),
        source_date_epoch=0,
    )
    if schema_version is not None:
        m = dataclasses.replace(m, schema_version=schema_version)
    path = directory / f"{name}.manifest.json"
    write_manifest(m, path)
    return FakeImage(path, eif, m)


def write_fake_vm_manifest(directory: Path, name: str = "agent-vm") -> Path:
    """Write a valid ``vm-image`` manifest with made-up measurements and its raw disk (8 KiB of a fixed
    pattern, digests computed from the file), which the image pipelines check before uploading."""
    directory.mkdir(parents=True, exist_ok=True)
    disk = directory / f"{name}.raw"
    disk.write_bytes(b"teeform fake disk\n".ljust(512, b"\0") * 16)
    meas = {
        "roothash": fake_hex("roothash", 64),
        "uki_authenticode_sha256": fake_hex("auth256", 64),
        "uki_authenticode_sha384": fake_hex("auth384"),
        "pcr11_sha256": fake_hex("pcr11-256", 64),
        "pcr11_sha384": fake_hex("pcr11-384"),
        "rtmr1": fake_hex("rtmr1"),
        "snp_launch_digest": fake_hex("snp"),
    }
    m = Manifest(
        kind=ArtifactKind.VM_IMAGE, name=name, version="1", artifact=Artifact.from_file(disk),
        measurements=meas, inputs=(), builder=Builder("teeform", "test"), source_date_epoch=0,
    )
    path = directory / f"{name}.manifest.json"
    write_manifest(m, path)
    return path


def nitro_target(manifests: list[Path], **overrides: Any) -> dict[str, Any]:
    """A valid aws/nitro-enclave target dict (camelCase, as in a stack file)."""
    t: dict[str, Any] = {
        "name": "agent",
        "cloud": "aws",
        "region": "eu-west-1",
        "tee": "nitro-enclave",
        "manifests": [str(p) for p in manifests],
        "instanceType": "m6i.xlarge",
        "enclave": {"cpuCount": 2, "memoryMib": 1024},
        "attestation": {"pcrs": ["PCR0", "PCR1", "PCR2"], "imageSha384": True},
    }
    t.update(overrides)
    return t


def write_stack_file(path: Path, targets: list[dict[str, Any]], *, environment: str = "dev", allow_debug: bool = False) -> Path:
    """Write a ``Pulumi.<stack>.yaml``-style file with ``teeform:*`` config."""
    doc = {
        "config": {
            "aws:region": "eu-west-1",
            "teeform:environment": environment,
            "teeform:allowDebug": allow_debug,
            "teeform:targets": targets,
        }
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def config_values(targets: list[dict[str, Any]], *, environment: str = "dev", allow_debug: bool = False) -> dict[str, Any]:
    """Config as :func:`teeform.preview.run_program` takes it (``{"ns:key": value}``)."""
    return {
        "aws:region": "eu-west-1",
        "teeform:environment": environment,
        "teeform:allowDebug": allow_debug,
        "teeform:targets": targets,
    }


def by_type(resources: list[Any], typ: str) -> list[Any]:
    """Registered resources (``RegisteredResource`` or ``MockResourceArgs``) of type ``typ``."""
    return [r for r in resources if getattr(r, "type", getattr(r, "typ", None)) == typ]


def run(targets: list[dict[str, Any]], *, stack: str = "dev", environment: str = "dev", allow_debug: bool = False):
    """Run the repository's ``__main__.py`` under :class:`teeform.preview.PreviewMocks`.

    Returns:
        (registered resources as :class:`teeform.preview.RegisteredResource`, stack outputs, the mocks).
    """
    from teeform.preview import registered_resources, run_program

    mocks, outputs = run_program(REPO, stack, config_values(targets, environment=environment, allow_debug=allow_debug))
    return registered_resources(mocks, stack), outputs, mocks


def one(resources: list[Any], typ: str) -> Any:
    """The single registered resource of type ``typ``."""
    found = by_type(resources, typ)
    assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
    return found[0]


def policy_violations(policy_name: str, resources: list[Any], config: dict[str, Any] | None = None) -> list[Any]:
    """Violations of one policy over ``resources`` (``RegisteredResource``), evaluated as CrossGuard
    would (teeform.preview.evaluate_policies), with ``config`` as the pack config entry."""
    from teeform.preview import evaluate_policies, load_policies

    pol = next(p for p in load_policies(REPO) if p.name == policy_name)
    pack = {policy_name: config} if config is not None else {}
    return evaluate_policies(resources, [pol], pack)


def resource(typ: str, inputs: dict[str, Any], name: str = "r1") -> Any:
    """A :class:`teeform.preview.RegisteredResource` with ``inputs`` (for policy unit tests)."""
    from teeform.preview import RegisteredResource

    return RegisteredResource(typ, name, f"urn:pulumi:dev::teeform::{typ}::{name}", True, inputs)


# ---- measurements-only stand-ins ---------------------------------------------------------------------------
# Every shipped vm-image pair creates cloud resources now (issues 8-11). Tests of the cloud-neutral program
# (a vm-image manifest loaded, registered, its measurements exported, targets keyed by name) run with the
# measurements-only plug-in (teeform/targets/measurements_only.py) standing in for gcp/sev-snp, gcp/tdx and
# alicloud/tdx, so they need no cloud settings.
from teeform.targets.base import Cloud as _Cloud  # noqa: E402
from teeform.targets.base import TeeType as _TeeType  # noqa: E402
from teeform.targets.measurements_only import MeasurementsOnlyPlugin as _MeasurementsOnly  # noqa: E402


class _GcpSnp(_MeasurementsOnly):
    cloud, tee, gate = _Cloud.GCP, _TeeType.SEV_SNP, "none (test stand-in)"


class _GcpTdx(_MeasurementsOnly):
    cloud, tee, gate = _Cloud.GCP, _TeeType.TDX, "none (test stand-in)"


class _AliTdx(_MeasurementsOnly):
    cloud, tee, gate = _Cloud.ALICLOUD, _TeeType.TDX, "none (test stand-in)"


STAND_IN_GCP_SNP, STAND_IN_GCP_TDX, STAND_IN_ALI_TDX = _GcpSnp(), _GcpTdx(), _AliTdx()


def measurements_only_stand_ins(monkeypatch: Any) -> None:
    """Point gcp/sev-snp, gcp/tdx and alicloud/tdx at measurements-only stand-ins for one test."""
    import teeform.targets as targets

    monkeypatch.setitem(targets.PLUGINS, (_Cloud.GCP, _TeeType.SEV_SNP), "pulumi_support:STAND_IN_GCP_SNP")
    monkeypatch.setitem(targets.PLUGINS, (_Cloud.GCP, _TeeType.TDX), "pulumi_support:STAND_IN_GCP_TDX")
    monkeypatch.setitem(targets.PLUGINS, (_Cloud.ALICLOUD, _TeeType.TDX), "pulumi_support:STAND_IN_ALI_TDX")
