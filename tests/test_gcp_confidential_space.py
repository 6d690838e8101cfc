"""The ``gcp``/``confidential-space`` target: settings, the resources the program registers, refusals.

Argument names and values are checked against pulumi-gcp 10.2's registered inputs (the mock engine
sees the wire names the SDK sends) and the facts of shared/reference/clouds.md §3.1 / pulumi.md §4.3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi_support import REPO, by_type, one, run, write_fake_eif_manifest, write_stack_file

from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout
from image_builder.pipelines.build_oci import OciBuildConfig, build_oci_manifest
from teeform.cli import main
from teeform.errors import TeeformError
from teeform.stack import StackConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPOSITORY = "europe-west4-docker.pkg.dev/my-project/teeform/agent"
INSTANCE = "gcp:compute/instance:Instance"
PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
KEY = "gcp:kms/cryptoKey:CryptoKey"
IAM = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"


def oci_manifest(tmp: Path, tag: str = "1", name: str = "agent") -> Path:
    """``teeform build oci`` of a one-layer image whose content depends on ``tag``."""
    blob = layer_blob(tmp / f"w{tag}", [LayerEntry("app", "file", tag.encode())], mtime=1000)
    write_oci_layout(tmp / f"img{tag}", [blob], image_config([blob.diff_id], cmd=["/app"], created=0),
                     platform={"os": "linux", "architecture": "amd64"})
    return build_oci_manifest(OciBuildConfig(tmp / f"img{tag}", tmp / f"out{tag}", name=name, version=tag)).manifest_path


def cs_target(manifests: list[Path], **overrides: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": "cs", "cloud": "gcp", "region": "europe-west4", "tee": "confidential-space",
                         "manifests": [str(m) for m in manifests], "project": "my-project",
                         "imageRepository": REPOSITORY}
    t.update(overrides)
    return t


def digest_of(path: Path) -> str:
    from teeform.manifest import load_manifest

    return load_manifest(path).measurements["image_digest"]


def test_resources_of_a_sev_snp_target(tmp_path: Path) -> None:
    new, old = oci_manifest(tmp_path, "2"), oci_manifest(tmp_path, "1")
    resources, outputs, _ = run([cs_target([new, old], restartPolicy="Always", logRedirect="cloud_logging")])
    vm = one(resources, INSTANCE).inputs
    assert vm["bootDisk"]["initializeParams"]["image"] == \
        "projects/confidential-space-images/global/images/family/confidential-space"
    assert vm["confidentialInstanceConfig"] == {"confidentialInstanceType": "SEV_SNP"}
    assert vm["minCpuPlatform"] == "AMD Milan" and vm["machineType"] == "n2d-standard-2"
    assert vm["shieldedInstanceConfig"] == {"enableSecureBoot": True, "enableVtpm": True, "enableIntegrityMonitoring": True}
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert vm["metadata"] == {"tee-image-reference": f"{REPOSITORY}@sha256:{digest_of(new)}",  # the first = deployed
                              "tee-restart-policy": "Always", "tee-container-log-redirect": "cloud_logging"}
    assert vm["serviceAccount"]["scopes"] == ["cloud-platform"]
    assert "accessConfigs" not in vm["networkInterfaces"][0]  # no external IP
    assert vm["labels"]["teeform-target"] == "cs"

    prov = one(resources, PROVIDER).inputs
    assert prov["oidc"] == {"issuerUri": "https://confidentialcomputing.googleapis.com/",
                            "allowedAudiences": ["https://sts.googleapis.com"]}
    assert prov["attributeMapping"]["attribute.image_digest"] == "assertion.submods.container.image_digest"
    assert f"['sha256:{digest_of(new)}', 'sha256:{digest_of(old)}']" in prov["attributeCondition"]
    assert prov["description"] == "teeform:target=cs"

    key = one(resources, KEY).inputs
    assert key["rotationPeriod"] == "7776000s" and key["versionTemplate"]["protectionLevel"] == "HSM"
    grants = sorted(r.inputs["member"] for r in by_type(resources, IAM))
    pool = one(resources, "gcp:iam/workloadIdentityPool:WorkloadIdentityPool").inputs["workloadIdentityPoolId"]
    assert grants == sorted(
        f"principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/{pool}/"
        f"attribute.image_digest/sha256:{digest_of(m)}" for m in (new, old))
    assert {r.inputs["role"] for r in by_type(resources, IAM)} == {"roles/cloudkms.cryptoKeyDecrypter"}
    roles = {r.inputs["role"] for r in by_type(resources, "gcp:projects/iAMMember:IAMMember")}
    assert roles == {"roles/confidentialcomputing.workloadUser", "roles/logging.logWriter"}
    assert not by_type(resources, "gcp:compute/firewall:Firewall")
    assert outputs["kms_key_id"].endswith("/cryptoKeys/dev-cs-key")
    assert outputs["workload_identity_provider"].endswith(f"workloadIdentityPools/{pool}/providers/attestation-verifier")
    assert outputs["instance_id"].isdigit()
    assert list(outputs["measurements"]) == ["agent@2", "agent@1"]


def test_tdx_and_software_key_and_ingress(tmp_path: Path) -> None:
    m = oci_manifest(tmp_path)
    resources, _, _ = run([cs_target([m], confidentialType="TDX", projectNumber="987654321098",
                                     key={"protectionLevel": "SOFTWARE", "rotationPeriodDays": 30,
                                          "encrypters": ["group:sealers@example.com"]},
                                     network={"ingress": [{"cidr": "203.0.113.0/24", "port": 443}]})])
    vm = one(resources, INSTANCE).inputs
    assert vm["confidentialInstanceConfig"] == {"confidentialInstanceType": "TDX"}
    assert "minCpuPlatform" not in vm and vm["machineType"] == "c3-standard-4"
    key = one(resources, KEY).inputs
    assert key["rotationPeriod"] == "2592000s" and key["versionTemplate"]["protectionLevel"] == "SOFTWARE"
    members = {r.inputs["role"]: r.inputs["member"] for r in by_type(resources, IAM)}
    assert members["roles/cloudkms.cryptoKeyEncrypter"] == "group:sealers@example.com"
    assert "/projects/987654321098/" in members["roles/cloudkms.cryptoKeyDecrypter"]
    fw = one(resources, "gcp:compute/firewall:Firewall").inputs
    assert fw["sourceRanges"] == ["203.0.113.0/24"] and fw["allows"] == [{"protocol": "tcp", "ports": ["443"]}]


@pytest.mark.parametrize(("env", "allow_debug", "why"), [
    ("prod", True, "a production stack"), ("dev", False, "a stack without teeform:allowDebug: true")])
def test_debug_image_family_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], env: str, allow_debug: bool,
                                    why: str) -> None:
    m = oci_manifest(tmp_path)
    stack = write_stack_file(tmp_path / f"Pulumi.{env}.yaml", [cs_target([m], imageFamily="confidential-space-debug")],
                             environment=env, allow_debug=allow_debug)
    rc = main(["preview", "--project-dir", str(REPO), "--stack", env, "--stack-file", str(stack)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "teeform:targets[cs].imageFamily: the confidential-space-debug image family" in err and why in err


def test_debug_image_in_dev_with_allow_debug_drops_dbgstat(tmp_path: Path) -> None:
    resources, _, _ = run([cs_target([oci_manifest(tmp_path)], imageFamily="confidential-space-debug")], allow_debug=True)
    assert "dbgstat" not in one(resources, PROVIDER).inputs["attributeCondition"]
    assert one(resources, INSTANCE).inputs["bootDisk"]["initializeParams"]["image"].endswith("/confidential-space-debug")


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"imageRepository": f"{REPOSITORY}:latest"}, "imageRepository", "without tag or digest"),
    ({"imageRepository": f"{REPOSITORY}@sha256:{'0' * 64}"}, "imageRepository", "without tag or digest"),
    ({"confidentialType": "SEV_ES"}, "confidentialType", "must be one of ['SEV', 'SEV_SNP', 'TDX']"),
    ({"imageFamily": "cos-stable"}, "imageFamily", "must be one of"),
    ({"supportAttributes": ["STABLE", "GOOD"]}, "supportAttributes[1]", "must be one of"),
    ({"project": "My_Project"}, "project", "must be a GCP project id"),
    ({"key": {"protectionLevel": "EXTERNAL"}}, "key.protectionLevel", "must be one of ['HSM', 'SOFTWARE']"),
    ({"key": {"encrypters": ["alice@example.com"]}}, "key.encrypters[0]", "must be an IAM member"),
    ({"enclave": {}}, "enclave", "not a setting of gcp/confidential-space targets"),
])
def test_settings_errors_name_the_field(tmp_path: Path, change: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(TeeformError) as info:
        StackConfig.from_values({"targets": [cs_target([tmp_path / "m.json"], **change)]}, stack="dev", source="s.yaml")
    assert info.value.field == f"teeform:targets[0].{field}" and message in info.value.message


def test_eif_manifest_refused_for_confidential_space(tmp_path: Path) -> None:
    eif = write_fake_eif_manifest(tmp_path / "b").manifest_path
    with pytest.raises(Exception) as info:  # noqa: PT011 - the program's error arrives wrapped by the engine
        run([cs_target([eif])])
    assert "is of kind 'eif', but the gcp/confidential-space target needs 'oci'" in str(info.value)
