"""``gcp``/``sev-snp`` and ``gcp``/``tdx``: teeform's measured disk imported and booted as a confidential VM.

Argument names and values: pulumi-gcp 10.2 wire inputs as the mock engine records them; facts
shared/reference/clouds.md §3.2-§3.3 and pulumi.md §4.3.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from pulumi_support import by_type, fake_hex, one, policy_violations, run

from image_builder.formats import diskformats
from teeform.errors import TeeformError
from teeform.manifest import Artifact, ArtifactKind, Builder, Manifest, write_manifest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

INSTANCE = "gcp:compute/instance:Instance"
IMAGE = "gcp:compute/image:Image"


def vm_manifest(directory: Path, *, with_tar: bool = True, name: str = "agent-vm") -> Path:
    """A vm-image manifest whose details name a real gce-tar written next to it (diskformats.convert)."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / f"{name}.raw"
    raw.write_bytes(b"\0" * (1 << 20))
    details: dict[str, Any] = {"formats": {"raw": {"file_name": raw.name, "size": raw.stat().st_size,
                                                   "sha256": hashlib.sha256(raw.read_bytes()).hexdigest()}}}
    if with_tar:
        tar = directory / f"{name}.tar.gz"
        diskformats.convert(raw, "gce-tar", tar, source_date_epoch=0)
        details["formats"]["gce-tar"] = {"file_name": tar.name, "size": tar.stat().st_size,
                                         "sha256": hashlib.sha256(tar.read_bytes()).hexdigest()}
    meas = {"roothash": fake_hex("r", 64), "uki_authenticode_sha256": fake_hex("a", 64),
            "uki_authenticode_sha384": fake_hex("a"), "pcr11_sha256": fake_hex("p", 64), "pcr11_sha384": fake_hex("p"),
            "rtmr1": fake_hex("t")}
    m = Manifest(kind=ArtifactKind.VM_IMAGE, name=name, version="1",
                 artifact=Artifact(raw.name, raw.stat().st_size, fake_hex("f", 64), fake_hex("f")), measurements=meas,
                 inputs=(), builder=Builder("teeform", "test"), source_date_epoch=0, details=details)
    path = directory / f"{name}.manifest.json"
    write_manifest(m, path)
    return path


def cvm_target(manifests: list[Path], tee: str = "sev-snp", **overrides: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": "cvm", "cloud": "gcp", "region": "europe-west4", "tee": tee,
                         "manifests": [str(m) for m in manifests], "project": "my-project"}
    t.update(overrides)
    return t


def test_sev_snp_vm_from_the_gce_tar(tmp_path: Path) -> None:
    man = vm_manifest(tmp_path / "b")
    resources, outputs, _ = run([cvm_target([man])])
    bucket = one(resources, "gcp:storage/bucket:Bucket").inputs
    assert bucket["publicAccessPrevention"] == "enforced" and bucket["uniformBucketLevelAccess"] is True
    obj = one(resources, "gcp:storage/bucketObject:BucketObject").inputs
    tar = tmp_path / "b" / "agent-vm.tar.gz"
    assert obj["name"] == f"{hashlib.sha256(tar.read_bytes()).hexdigest()}.tar.gz"
    img = one(resources, IMAGE).inputs
    assert img["rawDisk"] == {"source": f"https://storage.googleapis.com/{bucket['name']}/{obj['name']}",
                              "containerType": "TAR"}
    assert [f["type"] for f in img["guestOsFeatures"]] == ["UEFI_COMPATIBLE", "GVNIC", "SEV_SNP_CAPABLE"]
    vm = one(resources, INSTANCE).inputs
    assert vm["confidentialInstanceConfig"] == {"confidentialInstanceType": "SEV_SNP"}
    assert vm["minCpuPlatform"] == "AMD Milan" and vm["machineType"] == "n2d-standard-2"
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert vm["shieldedInstanceConfig"]["enableVtpm"] is True
    assert vm["networkInterfaces"][0]["nicType"] == "GVNIC" and "accessConfigs" not in vm["networkInterfaces"][0]
    assert vm["bootDisk"]["initializeParams"]["image"].endswith(f"/global/images/{img['name']}")
    assert not by_type(resources, "gcp:compute/firewall:Firewall")  # no ingress by default
    assert not [r for r in resources if r.type.startswith("gcp:kms/")]  # no key: the token pins the platform only
    assert list(outputs) == ["measurements", "instance_id", "image_self_link", "image_uri", "manifest_sha256"]
    assert outputs["image_uri"] == f"gs://{bucket['name']}/{obj['name']}"
    for policy in ("gcp-confidential-instance-enabled", "gcp-no-public-ingress", "gcp-confidential-space-no-debug-image"):
        assert policy_violations(policy, resources, {"environment": "prod"} if "debug" in policy else None) == [], policy


def test_tdx_vm_boots_from_nvme(tmp_path: Path) -> None:
    resources, _, _ = run([cvm_target([vm_manifest(tmp_path / "b")], tee="tdx")])
    assert [f["type"] for f in one(resources, IMAGE).inputs["guestOsFeatures"]][-1] == "TDX_CAPABLE"
    vm = one(resources, INSTANCE).inputs
    assert vm["confidentialInstanceConfig"] == {"confidentialInstanceType": "TDX"}
    assert vm["bootDisk"]["interface"] == "NVME" and vm["machineType"] == "c3-standard-4"
    assert "minCpuPlatform" not in vm


def test_manifest_without_gce_tar_is_refused(tmp_path: Path) -> None:
    man = vm_manifest(tmp_path / "b", with_tar=False)
    with pytest.raises(TeeformError, match=r"has no gce-tar artifact") as info:
        run([cvm_target([man])])
    assert "--format gce-tar" in (info.value.hint or "")
    man = vm_manifest(tmp_path / "c")
    (tmp_path / "c" / "agent-vm.tar.gz").unlink()
    with pytest.raises(TeeformError, match=r"the gce-tar artifact .*agent-vm.tar.gz of manifest .* is missing"):
        run([cvm_target([man])])


def test_gate_is_stated_as_platform_only() -> None:
    from teeform.targets import Cloud, TeeType, plugin_for

    for tee in (TeeType.SEV_SNP, TeeType.TDX):
        p = plugin_for(Cloud.GCP, tee)
        assert "platform only" in p.gate and p.key_release("t", p.parse_settings({"project": "my-project"}, "s", "f"),
                                                           []) is None


def test_gce_tar_that_is_not_the_recorded_file_is_refused(tmp_path: Path) -> None:
    """The uploaded image must be the gce-tar the manifest records (details.formats['gce-tar'] size and
    sha256, written by build vm-image); a swapped or truncated file was uploaded unchecked."""
    man = vm_manifest(tmp_path / "d")
    tar = tmp_path / "d" / "agent-vm.tar.gz"
    data = tar.read_bytes()
    tar.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other bytes
    with pytest.raises(TeeformError, match=r"gce-tar artifact sha256 [0-9a-f]{64} does not match the manifest's"):
        run([cvm_target([man])])
    tar.write_bytes(data + b"x")
    with pytest.raises(TeeformError, match=rf"gce-tar artifact is {len(data) + 1} bytes but the manifest says {len(data)}"):
        run([cvm_target([man])])
