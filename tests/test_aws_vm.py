"""``aws``/``nitro-tpm`` and ``aws``/``sev-snp`` targets (issue 8 items 3, 4, 6): the real Pulumi program under
mocks, on a manifest written by the real ``teeform build vm-image`` pipeline.

Oracles: the expected key-policy values are the manifest file's own measurements, read back with ``json``
(never through teeform); the resource arguments are the facts of AWS's documentation as recorded in
``shared/reference/clouds.md`` §1.1-§1.5 (condition-key names ``kms:RecipientAttestation:NitroTPMPCR<n>``,
the ``vmimport`` trust policy, ``ImportSnapshot`` format ``RAW``, ``RegisterImage`` ``uefi``/``v2.0``,
SEV-SNP ``amd_sev_snp = enabled`` on M6a/C6a/R6a in us-east-2/eu-west-1).

**PCR4 values.** ``build vm-image`` predicts ``pcr4_sha256``/``pcr4_sha384`` (image_builder/measure/pcr4.py);
their oracle is the measured-boot test (vTPM PCR4 after QEMU + OVMF, tests/test_boot.py). Here they are read
back from the built manifest file like every other value; a built manifest without them fails the fixture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import busybox_rootfs, locked, require_tool
from pulumi_support import REPO, by_type, fake_hex, one, policy_violations, run, write_stack_file

from teeform.errors import TeeformError
from teeform.manifest import Artifact, ArtifactKind, Builder, Manifest, write_manifest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

P4 = "kms:RecipientAttestation:NitroTPMPCR4"
P11 = "kms:RecipientAttestation:NitroTPMPCR11"
P12 = "kms:RecipientAttestation:NitroTPMPCR12"
ZERO384 = "0" * 96


@pytest.fixture(scope="module")
def built_vm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real vm-image manifest + raw disk: ``teeform build vm-image`` on a tiny busybox root."""
    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy"):
        require_tool(t)
    tmp = tmp_path_factory.mktemp("awsvm")
    root = busybox_rootfs(tmp)
    from teeform.cli import main

    assert main(["build", "vm-image", "--rootfs", str(root), "--kernel", str(locked("kernel.vmlinuz")),
                 "--stub", str(locked("bookworm.stub")), "--out", str(tmp / "out"),
                 "--name", "agent-vm", "--version", "1.0.0"]) == 0
    return tmp / "out" / "agent-vm.manifest.json"


@pytest.fixture(scope="module")
def tpm_manifest(built_vm: Path) -> Path:
    measurements = json.loads(built_vm.read_text())["measurements"]
    assert {"pcr4_sha256", "pcr4_sha384"} <= set(measurements), "build vm-image no longer predicts PCR4"
    return built_vm


def fake_vm(directory: Path, version: str = "1", label: str | None = None, **drop: bool) -> Path:
    """A small vm-image manifest with a raw "disk" of dummy bytes next to it (made-up hex measurements,
    test data; ``drop=...`` leaves measurements out)."""
    label = label or f"vm@{version}"
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "agent-vm.raw"
    raw.write_bytes(label.encode() * 512)
    meas = {"roothash": fake_hex(f"{label}:r", 64), "uki_authenticode_sha256": fake_hex(f"{label}:a", 64),
            "uki_authenticode_sha384": fake_hex(f"{label}:a"), "pcr11_sha256": fake_hex(f"{label}:11", 64),
            "pcr11_sha384": fake_hex(f"{label}:11"), "pcr12_sha256": "0" * 64, "pcr12_sha384": ZERO384,
            "pcr4_sha256": fake_hex(f"{label}:4", 64), "pcr4_sha384": fake_hex(f"{label}:4")}
    meas = {k: v for k, v in meas.items() if not drop.get(k)}
    m = Manifest(kind=ArtifactKind.VM_IMAGE, name="agent-vm", version=version, artifact=Artifact.from_file(raw),
                 measurements=meas, inputs=(), builder=Builder("teeform", "test"), source_date_epoch=0)
    path = directory / "agent-vm.manifest.json"
    write_manifest(m, path)
    return path


def vm_target(manifests: list[Path], tee: str = "nitro-tpm", **overrides: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": "vm", "cloud": "aws", "region": "eu-west-1", "tee": tee,
                         "manifests": [str(p) for p in manifests]}
    t.update(overrides)
    return t


@pytest.fixture
def ids(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Record the id the mock engine gives each resource (name -> id)."""
    from teeform.preview import PreviewMocks

    seen: dict[str, str] = {}
    orig = PreviewMocks.new_resource

    def new_resource(self: Any, args: Any) -> Any:
        rid, state = orig(self, args)
        seen[args.name] = rid
        return rid, state

    monkeypatch.setattr(PreviewMocks, "new_resource", new_resource)
    return seen


def key_policy(resources: list[Any]) -> dict[str, Any]:
    return json.loads(one(resources, "aws:kms/key:Key").inputs["policy"])


def release(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in doc["Statement"] if s["Sid"].startswith("NitroTpmRelease")]


# ----------------------------------------------------------------------------- the image pipeline and the VM


@pytest.mark.integration
def test_nitro_tpm_target_imports_the_raw_disk_registers_a_uefi_tpm_ami_and_launches_it(tpm_manifest: Path) -> None:
    doc = json.loads(tpm_manifest.read_text())
    resources, outputs, _ = run([vm_target([tpm_manifest])])
    sha384 = doc["artifact"]["sha384"]
    disk_key = f"vm-image/sha384/{sha384}.raw"

    bucket = one(resources, "aws:s3/bucket:Bucket").inputs["bucket"]
    obj = one(resources, "aws:s3/bucketObjectv2:BucketObjectv2").inputs
    assert obj["key"] == disk_key and obj["sourceHash"] == sha384
    tls = json.loads(one(resources, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    assert tls["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    # VM Import service role: trusted by vmie.amazonaws.com with the vmimport external id, reads the one object.
    roles = {r.name: r.inputs for r in by_type(resources, "aws:iam/role:Role")}
    vmimport = roles["vm-image-vmimport"]
    trust = json.loads(vmimport["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "vmie.amazonaws.com"}, "Action": "sts:AssumeRole",
                      "Condition": {"StringEquals": {"sts:Externalid": "vmimport"}}}]
    perms = json.loads(next(p.inputs["policy"] for p in by_type(resources, "aws:iam/rolePolicy:RolePolicy")
                            if p.name == "vm-image-vmimport-policy"))
    by_sid = {s["Sid"]: s for s in perms["Statement"]}
    assert by_sid["ReadDisk"]["Resource"] == f"arn:aws:s3:::{bucket}/{disk_key}"
    assert by_sid["ReadDiskBucket"]["Resource"] == f"arn:aws:s3:::{bucket}"
    assert not any(a.startswith("s3:Put") or a == "s3:*" for s in perms["Statement"] for a in s["Action"])

    snap = one(resources, "aws:ebs/snapshotImport:SnapshotImport").inputs
    assert snap["diskContainer"]["format"] == "RAW"
    assert snap["diskContainer"]["userBucket"] == {"s3Bucket": bucket, "s3Key": disk_key}
    assert snap["roleName"] == vmimport["name"] and snap["encrypted"] is True

    ami = one(resources, "aws:ec2/ami:Ami").inputs
    assert (ami["bootMode"], ami["tpmSupport"], ami["imdsSupport"], ami["enaSupport"], ami["virtualizationType"]) == (
        "uefi", "v2.0", "v2.0", True, "hvm")
    assert ami["rootDeviceName"] == "/dev/xvda"
    (root_dev,) = ami["ebsBlockDevices"]
    assert root_dev["deviceName"] == "/dev/xvda" and root_dev["snapshotId"].startswith("snap-")

    inst = one(resources, "aws:ec2/instance:Instance").inputs
    assert inst["ami"] == outputs["ami_id"] and inst["ami"].startswith("ami-")
    assert inst["metadataOptions"]["httpTokens"] == "required" and inst["rootBlockDevice"]["encrypted"] is True
    assert "cpuOptions" not in inst or not inst["cpuOptions"]
    assert inst["tags"]["teeform:tee"] == "nitro-tpm" and inst["tags"]["teeform:role"] != "enclave-host"
    assert inst["iamInstanceProfile"] == one(resources, "aws:iam/instanceProfile:InstanceProfile").inputs["name"]
    # no public ingress: the only ingress rules are the ones listed (none)
    assert by_type(resources, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []


@pytest.mark.integration
def test_nitro_tpm_key_pins_pcr4_and_pcr12_of_the_manifest(tpm_manifest: Path) -> None:
    doc = json.loads(tpm_manifest.read_text())
    resources, outputs, _ = run([vm_target([tpm_manifest])])
    policy = key_policy(resources)
    (stmt,) = release(policy)
    assert stmt["Condition"] == {"StringEqualsIgnoreCase": {P4: doc["measurements"]["pcr4_sha384"],
                                                            P12: doc["measurements"]["pcr12_sha384"]}}
    # teeform's UKI has no command-line add-ons: PCR12 is the all-zero SHA-384 AWS's nitro-tpm-pcr-compute emits.
    assert doc["measurements"]["pcr12_sha384"] == ZERO384
    assert stmt["Principal"] == {"AWS": f"arn:aws:iam::111122223333:role/{one(resources, 'aws:iam/instanceProfile:InstanceProfile').inputs['name']}"}
    assert stmt["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    admin = next(s for s in policy["Statement"] if s["Sid"] == "KeyAdministration")
    assert not {"kms:*", "kms:Decrypt", "kms:CreateGrant", "kms:Create*"} & set(admin["Action"])
    assert all("kms:GenerateRandom" not in s["Action"] for s in policy["Statement"])

    assert list(outputs) == ["measurements", "nitrotpm_measurements", "ami_id", "instance_id", "kms_key_arn",
                             "disk_uri", "manifest_sha256"]
    m = doc["measurements"]
    assert outputs["nitrotpm_measurements"] == {"agent-vm": {
        "PCR4": m["pcr4_sha384"], "PCR11": m["pcr11_sha384"], "PCR12": m["pcr12_sha384"], "roothash": m["roothash"]}}
    assert outputs["measurements"] == {"agent-vm": m}
    assert outputs["kms_key_arn"].startswith("arn:aws:kms:eu-west-1:111122223333:key/")
    assert outputs["instance_id"].startswith("i-")
    assert outputs["disk_uri"] == f"s3://{one(resources, 'aws:s3/bucket:Bucket').inputs['bucket']}/vm-image/sha384/{doc['artifact']['sha384']}.raw"
    # the whole pack: no mandatory violation
    from teeform.preview import evaluate_policies, load_policies

    violations = evaluate_policies(resources, load_policies(REPO), {})
    assert [v for v in violations if v.enforcement == "mandatory"] == []


def test_two_allowed_manifests_give_one_statement_each(tmp_path: Path) -> None:
    new, old = fake_vm(tmp_path / "v2", "2"), fake_vm(tmp_path / "v1", "1")
    resources, outputs, _ = run([vm_target([new, old], attestation={"pcrs": ["PCR4", "PCR12", "PCR11"]})])
    stmts = release(key_policy(resources))
    docs = [json.loads(p.read_text())["measurements"] for p in (new, old)]
    assert [s["Condition"]["StringEqualsIgnoreCase"] for s in stmts] == [
        {P4: d["pcr4_sha384"], P12: d["pcr12_sha384"], P11: d["pcr11_sha384"]} for d in docs]
    assert set(outputs["nitrotpm_measurements"]) == {"agent-vm@2", "agent-vm@1"}
    # only the first manifest's disk is imported
    assert one(resources, "aws:s3/bucketObjectv2:BucketObjectv2").inputs["sourceHash"] == json.loads(new.read_text())["artifact"]["sha384"]
    assert policy_violations("measurements-match-manifest", resources) == []
    assert policy_violations("aws-kms-nitrotpm-requires-pcr12-or-pcr7", resources) == []


def test_private_network_adds_source_vpce_and_locked_key(tmp_path: Path, ids: dict[str, str]) -> None:
    man = fake_vm(tmp_path)
    glass = "arn:aws:iam::111122223333:role/teeform-break-glass"
    resources, _, _ = run([vm_target([man], network={"private": True},
                                     key={"policyUpdates": "locked", "breakGlassRole": glass})])
    policy = key_policy(resources)
    (stmt,) = release(policy)
    endpoint = next(r for r in by_type(resources, "aws:ec2/vpcEndpoint:VpcEndpoint") if r.name.endswith("kms-endpoint"))
    assert stmt["Condition"]["StringEquals"] == {"aws:SourceVpce": ids[endpoint.name]}
    assert endpoint.inputs["vpcEndpointType"] == "Interface"
    sids = [s["Sid"] for s in policy["Statement"]]
    assert sids[-2:] == ["BreakGlassPolicyUpdate", "DenyPolicyUpdateExceptBreakGlass"]
    assert one(resources, "aws:kms/key:Key").inputs["bypassPolicyLockoutSafetyCheck"] is True
    assert policy_violations("aws-kms-key-policy-rewriters", resources) == []


# ----------------------------------------------------------------------------- SEV-SNP


def test_sev_snp_target_enables_snp_and_gates_the_key_on_nitrotpm(tmp_path: Path, ids: dict[str, str]) -> None:
    man = fake_vm(tmp_path)
    resources, outputs, _ = run([vm_target([man], tee="sev-snp")])
    ami = one(resources, "aws:ec2/ami:Ami")
    assert ami.inputs["ebsBlockDevices"][0]["snapshotId"] == ids["vm-image-snapshot"]
    assert one(resources, "aws:ec2/instance:Instance").inputs["ami"] == ids[ami.name] == outputs["ami_id"]
    inst = one(resources, "aws:ec2/instance:Instance").inputs
    assert inst["cpuOptions"] == {"amdSevSnp": "enabled"} and inst["instanceType"] == "m6a.large"
    assert inst["tags"]["teeform:tee"] == "sev-snp"
    assert one(resources, "aws:ec2/ami:Ami").inputs["bootMode"] == "uefi"
    (stmt,) = release(key_policy(resources))
    assert set(stmt["Condition"]["StringEqualsIgnoreCase"]) == {P4, P12}
    assert outputs["amd_sev_snp"] == "enabled"
    from teeform.targets import plugin_for
    from teeform.targets.base import Cloud, TeeType

    for tee in (TeeType.NITRO_TPM, TeeType.SEV_SNP):  # the plug-ins declare what the builders export
        declared = [o.name for o in plugin_for(Cloud.AWS, tee).outputs]
        assert declared == [k for k in outputs if k not in ("measurements", "manifest_sha256")][:len(declared)]
    assert [o.name for o in plugin_for(Cloud.AWS, TeeType.SEV_SNP).outputs] == [
        k for k in outputs if k not in ("measurements", "manifest_sha256")]
    assert policy_violations("aws-ec2-sev-snp-enabled", resources) == []


def test_sev_snp_refuses_unsupported_region_and_instance_type(tmp_path: Path) -> None:
    man = fake_vm(tmp_path)
    with pytest.raises(TeeformError) as ei:
        run([vm_target([man], tee="sev-snp", region="us-west-1")])
    assert ei.value.field == "teeform:targets[vm].region"
    assert ei.value.message == ("AWS offers SEV-SNP instances only in ['us-east-2', 'eu-west-1'] (EC2 user guide, "
                                "SEV-SNP requirements), not in 'us-west-1'")
    with pytest.raises(TeeformError) as ei:
        run([vm_target([man], tee="sev-snp", instanceType="m6i.large")])
    assert ei.value.field == "teeform:targets[0].instanceType"
    assert ei.value.message.startswith("'m6i.large' does not support AMD SEV-SNP; AWS offers it on m6a.large..m6a.8xlarge")
    with pytest.raises(TeeformError, match="'c6a.24xlarge' does not support AMD SEV-SNP"):
        run([vm_target([man], tee="sev-snp", instanceType="c6a.24xlarge")])


# ----------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(("attestation", "message"), [
    ({"pcrs": ["PCR4"]}, "must list PCR12 (or PCR7 with Secure Boot) with PCR4"),
    ({"pcrs": ["PCR12"]}, "must list PCR4 (the boot applications: our UKI)"),
    ({"pcrs": ["PCR4", "PCR12", "PCR4"]}, "lists a PCR twice"),
    ({"pcrs": ["PCR0", "PCR4", "PCR12"]}, "unknown NitroTPM PCR(s) ['PCR0']"),
    ({"pcrs": ["PCR4", "PCR7"]}, "PCR7 (the Secure Boot policy) is not predicted by this teeform"),
    ({"pcrs": "PCR4"}, "must be a list"),
    ({"secureBoot": True}, "unknown key(s) ['secureBoot']"),
])
def test_attestation_settings_are_checked(tmp_path: Path, attestation: dict[str, Any], message: str) -> None:
    from teeform.stack import StackConfig

    with pytest.raises(TeeformError) as ei:
        StackConfig.from_values({"targets": [vm_target([tmp_path / "m.json"], attestation=attestation)]},
                                stack="dev", source="stacks/Pulumi.dev.yaml")
    assert message in ei.value.message
    assert ei.value.path == "stacks/Pulumi.dev.yaml" and ei.value.field.startswith("teeform:targets[0].attestation")


def test_other_settings_are_checked_by_the_shared_parsers(tmp_path: Path) -> None:
    from teeform.stack import StackConfig

    def err(**kw: Any) -> TeeformError:
        with pytest.raises(TeeformError) as ei:
            StackConfig.from_values({"targets": [vm_target([tmp_path / "m.json"], **kw)]}, stack="dev", source="s.yaml")
        return ei.value

    assert err(enclave={"cpuCount": 2}).field == "teeform:targets[0].enclave"
    e = err(instanceType="t4g.large")
    assert e.field == "teeform:targets[0].instanceType" and "not an x86_64 instance type with NitroTPM" in e.message
    assert err(network={"private": True, "vpcId": "vpc-1", "subnetId": "s-1"}).field == "teeform:targets[0].network.private"
    assert err(key={"policyUpdates": "locked"}).field == "teeform:targets[0].key.breakGlassRole"


def test_manifest_without_pcr4_is_refused_naming_the_field(tmp_path: Path) -> None:
    man = fake_vm(tmp_path, pcr4_sha384=True, pcr4_sha256=True)
    with pytest.raises(TeeformError) as ei:
        run([vm_target([man])])
    assert ei.value.message == "manifest 'agent-vm' has no pcr4_sha384 measurement to pin"
    assert ei.value.field == "teeform:targets[vm].attestation.pcrs" and "predicts NitroTPM PCR4" in (ei.value.hint or "")


def test_eif_manifest_is_refused_for_a_vm_target(tmp_path: Path) -> None:
    from pulumi_support import write_fake_eif_manifest

    img = write_fake_eif_manifest(tmp_path)
    with pytest.raises(TeeformError, match="vm-image"):
        run([vm_target([img.manifest_path])])


def test_vm_image_manifest_without_artifact_sha384_is_refused_naming_the_field(tmp_path: Path) -> None:
    """Schema 2 lets any manifest omit artifact.sha384, but the raw disk's object key and AMI name are named
    by it (vm-image manifests from `teeform build vm-image` keep recording it): refused before any resource."""
    man = fake_vm(tmp_path)
    doc = json.loads(man.read_text())
    assert doc["schema_version"] == 2 and len(doc["artifact"]["sha384"]) == 96
    del doc["artifact"]["sha384"]
    man.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    with pytest.raises(TeeformError) as ei:
        run([vm_target([man])])
    assert ei.value.field == "artifact.sha384" and ei.value.path == str(man)
    assert "has no sha384" in ei.value.message and "teeform build vm-image" in (ei.value.hint or "")


def test_missing_or_stale_disk_is_a_clear_error(tmp_path: Path) -> None:
    man = fake_vm(tmp_path)
    raw = tmp_path / "agent-vm.raw"
    raw.write_bytes(raw.read_bytes()[:-1] + b"x")
    with pytest.raises(TeeformError, match="disk sha384 .* does not match the manifest's"):
        run([vm_target([man])])
    raw.unlink()
    with pytest.raises(TeeformError, match="the raw disk agent-vm.raw described by the manifest is not on disk"):
        run([vm_target([man])])


def test_cli_error_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from teeform.cli import main

    man = fake_vm(tmp_path)
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [vm_target([man], attestation={"pcrs": ["PCR4"]})])
    rc = main(["preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(stack)])
    out, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in out + err
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert "Pulumi.dev.yaml" in line and "teeform:targets[0].attestation.pcrs" in line


# ----------------------------------------------------------------------------- the example stacks


@pytest.mark.integration
@pytest.mark.parametrize(("stack", "tee"), [("nitro-tpm", "nitro-tpm"), ("aws-snp", "sev-snp")])
def test_example_stacks_preview_offline_without_mandatory_violations(
        tpm_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], stack: str, tee: str) -> None:
    """The repository's example stack, with its manifest path (build/vm-demo/image/..., written by
    scripts/vm-demo.sh) pointed at the fixture's built manifest."""
    from teeform.cli import main

    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    (target,) = doc["config"]["teeform:targets"]
    assert target["tee"] == tee and target["manifests"] == ["build/vm-demo/image/agent-vm.manifest.json"]
    target["manifests"] = [str(tpm_manifest)]
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc = main(["preview", "--project-dir", str(REPO), "--stack", stack, "--stack-file", str(path), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    result = json.loads(out)
    assert [v for v in result["violations"] if v["enforcementLevel"] == "mandatory"] == []
    m = json.loads(tpm_manifest.read_text())["measurements"]
    assert result["outputs"]["nitrotpm_measurements"]["agent-vm"]["PCR4"] == m["pcr4_sha384"]
    assert {"ami_id", "instance_id", "kms_key_arn"} <= set(result["outputs"])


# ----------------------------------------------------------------------------- README


def test_readme_nitro_tpm_statement_has_the_shape_teeform_renders() -> None:
    """The README's generated nitro-tpm-demo block (scripts/readme-examples.py) shows the statement
    tpm_release_statements renders for a private-network target: same Sid, actions, operators and condition
    keys; its values are hex of the right length, no placeholders (tests/test_readme_nitro_tpm.py checks them
    against the manifest)."""
    import re

    from components.aws.tpm_key import tpm_release_statements
    from teeform.keyrelease import KeyReleasePolicy, MeasurementSet

    text = (REPO / "README.md").read_text()
    section = text[text.index("### AWS NitroTPM VM"):]
    section = section.split("\n### ", 1)[0]
    block = section.split("<!-- BEGIN nitro-tpm-demo -->", 1)[1].split("<!-- END nitro-tpm-demo -->", 1)[0]
    shown = json.loads(re.search(r"^(\{\n.*?\n\})$", block, re.S | re.M).group(1))  # type: ignore[union-attr]
    rendered = tpm_release_statements(
        KeyReleasePolicy("vm", (MeasurementSet("agent-vm", {"pcr4_sha384": fake_hex("a"), "pcr12_sha384": ZERO384}),)),
        "arn:aws:iam::111122223333:role/teeform-nitro-tpm-vm-vm", source_vpce="vpce-0123")[0]

    def shape(s: dict[str, Any]) -> Any:
        return (s["Sid"], s["Effect"], s["Action"], s["Resource"],
                {op: sorted(block) for op, block in s["Condition"].items()})

    assert shape(shown) == shape(rendered)
    cond = shown["Condition"]["StringEqualsIgnoreCase"]
    assert re.fullmatch(r"[0-9a-f]{96}", cond[P4]) and cond[P12] == ZERO384
    assert "<" not in json.dumps(shown)  # no placeholders left


@pytest.mark.parametrize("tee", ["nitro-tpm", "sev-snp"])
def test_preview_text_shows_the_pipeline_the_gate_and_snp(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           tee: str) -> None:
    from teeform.cli import main

    man = fake_vm(tmp_path / "img")
    pcr4 = json.loads(man.read_text())["measurements"]["pcr4_sha384"]
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [vm_target([man], tee=tee)])
    rc = main(["preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(stack)])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "      format=RAW s3://" in out and "bootMode=uefi tpmSupport=v2.0 imdsSupport=v2.0" in out
    assert f"  StringEqualsIgnoreCase {P4} in [{pcr4}]" in out and f"  StringEqualsIgnoreCase {P12} in [{ZERO384}]" in out
    assert ("cpuOptions.amdSevSnp=enabled" in out) == (tee == "sev-snp")
    assert "No mandatory violations." in out
