"""Alibaba Cloud TDX target (issue 11 item 3): settings, zone table, the program's resources, the
RunInstances request, and ``stacks/Pulumi.alicloud.yaml`` previewed offline.

Oracles: the RunInstances request is serialised by the Alibaba SDK's own model
(``RunInstancesRequest.to_map``, the wire names of the ECS API reference); resource arguments are the
pulumi-alicloud 4.0.0 wire names the mock engine receives; the RVPS message is decoded here with
``base64`` + ``json`` and compared with the manifest file's own values (read with ``json``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pulumi_support import REPO, by_type, one, run, write_fake_vm_manifest

from components.alicloud import tdx_instance
from teeform.errors import TeeformError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run_with_key(targets: list[dict[str, Any]]):
    """Run the program with the KBS admin key set as config (what `pulumi config set --secret` stores)."""
    from pulumi_support import config_values

    from teeform.preview import registered_resources, run_program

    values = {**config_values(targets), "teeform:kbsAdminKey": "-----BEGIN PRIVATE KEY-----\n"}
    mocks, outputs = run_program(REPO, "dev", values)
    return registered_resources(mocks, "dev"), outputs, mocks


def target(manifest: Path, **over: Any) -> dict[str, Any]:
    t = {"name": "td", "cloud": "alicloud", "region": "cn-beijing", "tee": "tdx", "manifests": [str(manifest)],
         "instanceType": "ecs.g8i.xlarge", "zone": "cn-beijing-i",
         "keyBroker": {"deploy": {"adminCidr": "203.0.113.0/24"}}}
    t.update(over)
    return t


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_fake_vm_manifest(tmp_path / "build")


def test_g8i_uses_run_instances_with_tdx_and_the_broker_pins_the_manifest(manifest: Path) -> None:
    doc = json.loads(manifest.read_text())
    res, outs, _ = run([target(manifest)])
    tdx = one(res, "pulumi-python:dynamic/alicloud:TdxInstance")
    assert tdx.inputs["instance_type"] == "ecs.g8i.xlarge" and tdx.inputs["zone_id"] == "cn-beijing-i"
    # ecs.Instance: the KBS host, and the g8i guest adopted read-only (a read: no inputs, by id).
    assert sorted(r.name for r in by_type(res, "alicloud:ecs/instance:Instance")) == ["td-tdx-view", "td-trustee-kbs"]
    img = one(res, "alicloud:ecs/imageImport:ImageImport")
    assert img.inputs["bootMode"] == "UEFI" and img.inputs["features"] == {"nvmeSupport": "supported"}
    (dm,) = img.inputs["diskDeviceMappings"]
    assert dm["format"] == "RAW" and dm["ossObject"] == f"agent-vm/{doc['artifact']['sha256']}.raw"
    obj = one(res, "alicloud:oss/bucketObject:BucketObject")
    assert obj.inputs["source"] == str(manifest.parent / doc["artifact"]["file_name"])
    assert one(res, "alicloud:oss/bucket:Bucket").inputs["acl"] == "private"
    reg = one(res, "pulumi-python:dynamic/trustee:KbsRegistration")
    prov = json.loads(base64.b64decode(reg.inputs["rvps_message"]["payload"]))
    m = doc["measurements"]
    assert sorted(v[0] for v in prov.values()) == sorted([m["uki_authenticode_sha384"], m["rtmr1"]])
    assert outs["reference_value_ids"] == sorted(prov)
    assert outs["instance_id"].startswith("i-") and outs["image_id"].startswith("m-")
    assert outs["kbs_url"].startswith("https://203.0.113.") and outs["key_resource"] == "resource/teeform/td/key"
    assert outs["measurements"] == {"agent-vm": m}


def test_security_group_has_no_ingress_but_the_kbs(manifest: Path) -> None:
    res, _, _ = run([target(manifest)])
    rules = by_type(res, "alicloud:ecs/securityGroupRule:SecurityGroupRule")
    assert sorted((r.inputs["cidrIp"], r.inputs["portRange"]) for r in rules) == [
        ("10.50.0.0/16", "8080/8080"), ("203.0.113.0/24", "8080/8080")]
    res, _, _ = run_with_key([target(manifest, keyBroker={"url": "https://kbs.example:8080"})])
    assert by_type(res, "alicloud:ecs/securityGroupRule:SecurityGroupRule") == []
    assert [r.name for r in by_type(res, "alicloud:ecs/instance:Instance")] == ["td-tdx-view"]


def test_gn8v_tee_is_a_plain_instance(manifest: Path) -> None:
    res, outs, _ = run_with_key([target(manifest, instanceType="ecs.gn8v-tee.4xlarge", zone="cn-beijing-l",
                               keyBroker={"url": "https://kbs.example:8080"})])
    assert by_type(res, "pulumi-python:dynamic/alicloud:TdxInstance") == []
    inst = one(res, "alicloud:ecs/instance:Instance")
    assert inst.inputs["instanceType"] == "ecs.gn8v-tee.4xlarge" and inst.inputs["availabilityZone"] == "cn-beijing-l"
    assert inst.inputs["httpTokens"] == "required" and inst.inputs.get("internetMaxBandwidthOut", 0) == 0
    assert outs["kbs_url"] == "https://kbs.example:8080"


@pytest.mark.parametrize(("over", "field", "msg"), [
    ({"zone": "cn-beijing-f"}, "zone", "does not offer g8i"),
    ({"instanceType": "ecs.gn8v-tee.4xlarge", "zone": "cn-beijing-i"}, "zone", "does not offer gn8v-tee"),
    ({"instanceType": "ecs.g8i.large"}, "instanceType", "xlarge or larger"),
    ({"instanceType": "ecs.c7.xlarge"}, "instanceType", "not an Alibaba TDX instance type"),
    ({"keyBroker": {"url": "https://k:1", "deploy": {}}}, "keyBroker", "exactly one"),
    ({"keyBroker": {"deploy": {"adminCidr": "0.0.0.0/0"}}}, "keyBroker.deploy.adminCidr", "every address"),
    ({"keyBroker": {"url": "https://k:1", "verifier": "az-snp-vtpm"}}, "keyBroker.verifier", "tdx verifier"),
    ({"keyBroker": {"url": "https://k:1", "mrTd": ["ab"]}}, "keyBroker.mrTd[0]", "96 lowercase hex"),
    ({"keyBroker": {"url": "https://k:1", "pins": ["rtmr_9"]}}, "keyBroker.pins", "not a tdx claim"),
    ({"keyBroker": None}, "keyBroker", "required"),
    ({"network": {"ingress": [{"cidr": "nope", "port": 22}]}}, "network.ingress[0].cidr", "must be an IPv4 or IPv6 CIDR"),
])
def test_bad_settings_name_the_field(manifest: Path, over, field, msg) -> None:
    from teeform.stack import StackConfig

    t = target(manifest, **over)
    with pytest.raises(TeeformError) as exc:
        StackConfig.from_values({"environment": "dev", "targets": [t]}, stack="dev", source="stacks/x.yaml",
                                project_dir=REPO)
    assert exc.value.field == f"teeform:targets[0].{field}" and msg in exc.value.message, exc.value


def test_missing_admin_key_secret_is_one_clear_error(manifest: Path) -> None:
    with pytest.raises(TeeformError, match="teeform:kbsAdminKey is missing") as exc:
        run([target(manifest, keyBroker={"url": "https://kbs.example:8080"})])
    assert exc.value.field == "keyBroker.adminKeySecret" and "pulumi config set --secret" in (exc.value.hint or "")


def test_zone_outside_the_region_is_refused(manifest: Path) -> None:
    with pytest.raises(TeeformError, match=r"not in region 'cn-hangzhou'"):
        run([target(manifest, region="cn-hangzhou")])


def test_run_instances_request_shape_from_the_sdk_model() -> None:
    props = {"region_id": "cn-beijing", "zone_id": "cn-beijing-i", "instance_type": "ecs.g8i.xlarge",
             "image_id": "m-abc", "v_switch_id": "vsw-1", "security_group_id": "sg-1", "instance_name": "teeform-td",
             "user_data": None, "system_disk_category": "cloud_essd", "system_disk_size": 40, "tags": {"k": "v"}}
    token = tdx_instance.client_token("teeform-td", props)
    wire = tdx_instance.run_instances_request(props, token).to_map()
    assert wire["SecurityOptions"] == {"ConfidentialComputingMode": "TDX"}
    assert {k: wire[k] for k in ("RegionId", "ZoneId", "InstanceType", "ImageId", "VSwitchId", "SecurityGroupId",
                                 "Amount", "HttpTokens", "InternetMaxBandwidthOut")} == {
        "RegionId": "cn-beijing", "ZoneId": "cn-beijing-i", "InstanceType": "ecs.g8i.xlarge", "ImageId": "m-abc",
        "VSwitchId": "vsw-1", "SecurityGroupId": "sg-1", "Amount": 1, "HttpTokens": "required",
        "InternetMaxBandwidthOut": 0}
    assert wire["SystemDisk"] == {"Category": "cloud_essd", "Size": "40"} and wire["Tag"] == [{"Key": "k", "Value": "v"}]
    assert wire["ClientToken"] == token and len(token) <= 64 and token.isascii()
    assert tdx_instance.client_token("teeform-td", dict(props, image_id="m-other")) != token


def test_provider_create_read_delete_with_a_fake_client(monkeypatch) -> None:
    calls: list[tuple[str, dict]] = []

    class FakeClient:
        def run_instances(self, req):
            calls.append(("RunInstances", req.to_map()))
            return SimpleNamespace(body=SimpleNamespace(request_id="r",
                                                        instance_id_sets=SimpleNamespace(instance_id_set=["i-123"])))

        def describe_instances(self, req):
            calls.append(("DescribeInstances", req.to_map()))
            inst = [SimpleNamespace(status="Running")] if "i-123" in req.instance_ids else []
            return SimpleNamespace(body=SimpleNamespace(instances=SimpleNamespace(instance=inst)))

        def delete_instance(self, req):
            calls.append(("DeleteInstance", req.to_map()))

    monkeypatch.setattr(tdx_instance, "_client", lambda region: FakeClient())
    p = tdx_instance.TdxInstanceProvider()
    props = {"region_id": "cn-beijing", "zone_id": "cn-beijing-i", "instance_type": "ecs.g8i.xlarge", "image_id": "m",
             "v_switch_id": "v", "security_group_id": "s", "tags": {}}
    r = p.create(props)
    assert r.id == "i-123" and r.outs["instance_id"] == "i-123"
    assert p.read("i-123", r.outs).outs["status"] == "Running"
    assert p.read("i-gone", r.outs).id is None
    assert p.diff("i-123", r.outs, dict(props, image_id="m2")).replaces == ["image_id"]
    p.delete("i-123", r.outs)
    assert [c[0] for c in calls] == ["RunInstances", "DescribeInstances", "DescribeInstances", "DeleteInstance"]
    assert json.loads(calls[1][1]["InstanceIds"]) == ["i-123"]
    assert calls[-1][1] == {"InstanceId": "i-123", "Force": True}


def test_provider_without_credentials_is_a_clear_error(monkeypatch) -> None:
    for v in ("ALICLOUD_ACCESS_KEY", "ALICLOUD_SECRET_KEY", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(TeeformError, match="no Alibaba Cloud credentials"):
        tdx_instance._client("cn-beijing")


def repo_stack(tmp_path: Path, manifest: Path) -> Path:
    from test_azure_components import write_vhd_manifest  # the Azure target (issue 11 item 4) needs a Hyper-V VHD

    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.alicloud.yaml").read_text())
    for t in doc["config"]["teeform:targets"]:
        t["manifests"] = [str(manifest if t["cloud"] != "azure" else write_vhd_manifest(tmp_path / "azure-vm"))]
    path = tmp_path / "Pulumi.alicloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_repo_alicloud_stack_previews_clean(tmp_path: Path, manifest: Path, capsys) -> None:
    from teeform.cli import main

    rc = main(["preview", "--project-dir", str(REPO), "--stack", "alicloud", "--stack-file",
               str(repo_stack(tmp_path, manifest)), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    doc = json.loads(out)
    o = doc["outputs"]
    assert set(o["instance_id"]) == {"agent-g8i", "agent-gpu"}
    assert set(o["kbs_url"]) == {"agent-g8i", "agent-gpu", "agent-az"}
    assert all(ids for ids in o["reference_value_ids"].values())
    mandatory = [v for v in doc.get("violations", []) if v.get("level") == "mandatory"]
    assert mandatory == [], mandatory


def _with_qcow2(manifest: Path, data: bytes | None, **entry: Any) -> Path:
    """Add ``details.formats.qcow2`` to ``manifest`` (and write the qcow2 file, unless ``data`` is None)."""
    doc = json.loads(manifest.read_text())
    q = {"file_name": "agent-vm.qcow2", **entry}
    if data is not None:
        (manifest.parent / "agent-vm.qcow2").write_bytes(data)
        q.setdefault("sha256", hashlib.sha256(data).hexdigest())
        q.setdefault("size", len(data))
    doc.setdefault("details", {})["formats"] = {"qcow2": q}
    manifest.write_text(json.dumps(doc))
    return manifest


def test_the_qcow2_disk_is_uploaded_when_the_manifest_has_one(manifest: Path) -> None:
    data = b"QFI\xfb" + bytes(1000)
    _with_qcow2(manifest, data)
    res, _, _ = run([target(manifest)])
    obj = one(res, "alicloud:oss/bucketObject:BucketObject")
    assert obj.inputs["source"] == str(manifest.parent / "agent-vm.qcow2")
    (dm,) = one(res, "alicloud:ecs/imageImport:ImageImport").inputs["diskDeviceMappings"]
    assert dm["format"] == "qcow2" and dm["ossObject"] == f"agent-vm/{hashlib.sha256(data).hexdigest()}.qcow2"


def test_a_disk_that_is_not_the_manifests_is_refused(manifest: Path) -> None:
    """The raw disk rewritten after the build (same size): refused before anything is uploaded."""
    disk = manifest.parent / "agent-vm.raw"
    disk.write_bytes(bytes(disk.stat().st_size))
    with pytest.raises(TeeformError, match="raw disk sha256 .* does not match the manifest") as exc:
        run([target(manifest)])
    assert str(exc.value.path) == str(disk)


def test_a_missing_disk_is_refused(manifest: Path) -> None:
    (manifest.parent / "agent-vm.raw").unlink()
    with pytest.raises(TeeformError, match="is not on disk"):
        run([target(manifest)])


def test_a_qcow2_entry_without_its_sha256_names_the_field(manifest: Path) -> None:
    _with_qcow2(manifest, None)
    with pytest.raises(TeeformError, match="no SHA-256") as exc:
        run([target(manifest)])
    assert exc.value.field == "details.formats.qcow2.sha256"


def test_a_changed_qcow2_is_refused(manifest: Path) -> None:
    _with_qcow2(manifest, b"QFI\xfb" + bytes(1000), sha256="0" * 64)
    with pytest.raises(TeeformError, match="qcow2 disk sha256"):
        run([target(manifest)])
