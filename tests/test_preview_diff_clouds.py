"""`teeform preview diff`: key-release changes per key as allowed sets, for every cloud (issue 12 item 1).

BASE and HEAD are real `teeform preview --json` documents: the repository's Pulumi program under the
mock engine, on stacks whose targets list two different manifests. The expected sets are read from the
manifest files with ``json`` (never through teeform): the GCP image digest ``image_digest`` that
``teeform build oci`` recorded, the NitroTPM ``pcr4_sha384``/``pcr12_sha384``, the Trustee-pinned
``uki_authenticode_sha384``/``rtmr1``. The Azure release policy is decoded here with the standard library
(base64url, RFC 4648 §5, + json), independently of teeform's decoder; the claim names and values are
those of Microsoft's SKR grammar and guest-attestation token (shared/reference/clouds.md §2.2, §2.4).
The CEL edge cases are checked against cel-python's own evaluator.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from pulumi_support import REPO, fake_hex, write_stack_file

from image_builder.formats.diskformats import vhd_footer
from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout
from image_builder.pipelines.build_oci import OciBuildConfig, build_oci_manifest
from teeform.cli import main
from teeform.keyrelease_readers import read_azure_key, read_gcp_provider, read_trustee
from teeform.manifest import Artifact, ArtifactKind, Builder, Manifest, write_manifest
from teeform.preview_diff import diff_previews

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

AUTHORITY = "https://sharedweu.weu.attest.azure.net"
OTHER_AUTHORITY = "https://sharedneu.neu.attest.azure.net"


# ------------------------------------------------------------------------------------ helpers
def cli(*args: str) -> tuple[int, str]:
    """Run the teeform CLI in-process; (exit status, stdout)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(args))
    return rc, buf.getvalue()


def preview(tmp: Path, name: str, targets: list[dict[str, Any]]) -> Path:
    """`teeform preview --stack <name> --json` of a stack file with ``targets``; the document's path."""
    stack = write_stack_file(tmp / f"Pulumi.{name}.yaml", targets)
    rc, out = cli("preview", "--project-dir", str(REPO), "--stack", "s", "--stack-file", str(stack), "--json",
                  "--today", "2026-01-01")
    assert rc == 0, out[-2000:]
    path = tmp / f"{name}.json"
    path.write_text(out)
    return path


def diff(base: Path, head: Path) -> tuple[Any, str, str, dict[str, Any]]:
    """(PreviewDiff, Markdown, text, JSON) of two preview files, through the CLI for the three renderings."""
    d = diff_previews(json.loads(base.read_text()), json.loads(head.read_text()))
    rc, md = cli("preview", "diff", str(base), str(head), "--markdown")
    assert rc == 0
    rc, text = cli("preview", "diff", str(base), str(head))
    assert rc == 0
    rc, js = cli("preview", "diff", str(base), str(head), "--json")
    assert rc == 0
    return d, md, text, json.loads(js)


def measurements(path: Path) -> dict[str, str]:
    return json.loads(path.read_text())["measurements"]


def change(d: Any, resource_prefix: str) -> Any:
    found = [k for k in d.key_release if k.resource.startswith(resource_prefix)]
    assert len(found) == 1, [k.resource for k in d.key_release]
    return found[0]


# ---------------------------------------------------------------------------------------- GCP
def oci_manifest(tmp: Path, tag: str) -> Path:
    """`teeform build oci` of a one-layer image whose content depends on ``tag`` (as tests/test_gcp_*.py)."""
    blob = layer_blob(tmp / f"w{tag}", [LayerEntry("app", "file", tag.encode())], mtime=1000)
    write_oci_layout(tmp / f"img{tag}", [blob], image_config([blob.diff_id], cmd=["/app"], created=0),
                     platform={"os": "linux", "architecture": "amd64"})
    return build_oci_manifest(OciBuildConfig(tmp / f"img{tag}", tmp / f"out{tag}", name="agent", version=tag)).manifest_path


def cs_target(manifests: list[Path], **over: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": "cs", "cloud": "gcp", "region": "europe-west4", "tee": "confidential-space",
                         "manifests": [str(m) for m in manifests], "project": "my-project",
                         "imageRepository": "europe-west4-docker.pkg.dev/my-project/teeform/agent"}
    t.update(over)
    return t


@pytest.fixture(scope="module")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("gcpdiff")
    v1, v2 = oci_manifest(tmp, "1"), oci_manifest(tmp, "2")
    return {"v1": v1, "v2": v2,
            "base": preview(tmp, "base", [cs_target([v1])]),
            "rollover": preview(tmp, "rollover", [cs_target([v2, v1], supportAttributes=["STABLE", "LATEST"])]),
            "drop": preview(tmp, "drop", [cs_target([v2])])}


def test_gcp_condition_and_grants_name_the_added_and_removed_digests(gcp: dict[str, Path]) -> None:
    d1, d2 = measurements(gcp["v1"])["image_digest"], measurements(gcp["v2"])["image_digest"]
    assert d1 != d2 and len(d1) == 64  # bare hex in the manifest; "sha256:<hex>" in the condition and principal sets
    cond = next(r for r in json.loads(gcp["rollover"].read_text())["resources"]
                if r["type"].startswith("gcp:iam/workloadIdentityPoolProvider"))["inputs"]["attributeCondition"]
    assert f"'sha256:{d2}', 'sha256:{d1}'" in cond
    d, md, text, js = diff(gcp["base"], gcp["rollover"])
    # the WIF provider's CEL condition: v2's digest added, v1's kept, the new support attribute is a new conjunct
    prov = change(d, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider cs-key-provider")
    assert [dict(s.values) for s in prov.added] == [{"image_digest": d2}] and prov.removed == () and prov.kept == 1
    assert prov.added[0].manifest == "cs/agent@2 (agent@2)" and prov.kind == "gcp-wif-condition" and prov.pins == "image"
    assert prov.terms_added == ("'LATEST' in assertion.submods.confidential_space.support_attributes",)
    assert prov.terms_removed == ()
    # the KMS decrypter grants (one resource per digest) are one gate: the principal set of v2 added
    grants = change(d, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember roles/cloudkms.cryptoKeyDecrypter on ")
    assert [dict(s.values) for s in grants.added] == [{"image_digest": d2}] and grants.kept == 1
    assert f"image_digest={d2[:16]}" in md and "condition `'LATEST' in assertion.submods" in md
    assert "`gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider cs-key-provider`: 1 allowed set(s) added" in md
    assert f"  + cs/agent@2 (agent@2): image_digest={d2[:16]}…" in text
    [j] = [k for k in js["keyRelease"] if k["kind"] == "gcp-wif-condition"]
    assert j["added"] == [{"manifest": "cs/agent@2 (agent@2)", "measurements": {"image_digest": d2}, "actions": []}]
    # dropping v1 removes its digest from both
    d, _, _, _ = diff(gcp["rollover"], gcp["drop"])
    for prefix in ("gcp:iam/workloadIdentityPoolProvider", "gcp:kms/cryptoKeyIAMMember"):
        k = change(d, prefix)
        assert [dict(s.values) for s in k.removed] == [{"image_digest": d1}] and k.added == () and k.kept == 1
        assert k.removed[0].manifest == "cs/agent@1 (agent@1)"  # its key in the base (two builds of one name)


def test_gcp_same_manifests_give_no_key_release_change(gcp: dict[str, Path]) -> None:
    d, _, _, _ = diff(gcp["base"], gcp["base"])
    assert d.key_release == ()


def test_gcp_decrypter_grant_to_a_plain_identity_widens_the_gate(gcp: dict[str, Path]) -> None:
    base = json.loads(gcp["base"].read_text())
    head = json.loads(gcp["base"].read_text())
    grant = next(r for r in head["resources"] if r["type"] == "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
                 and r["inputs"]["role"] == "roles/cloudkms.cryptoKeyDecrypter")
    sa = "serviceAccount:ops@my-project.iam.gserviceaccount.com"
    head["resources"].append({**grant, "name": "ops-decrypt", "urn": grant["urn"] + "-ops",
                              "inputs": {**grant["inputs"], "member": sa}})
    k = change(diff_previews(base, head), "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert [dict(s.values) for s in k.added] == [{"member": sa}] and k.kept == 1
    assert k.pins == "identity"  # the key now also goes to an identity without any attestation
    assert "(pins an identity, not an image): 1 allowed set(s) added" in diff_previews(base, head).render_markdown()


def test_gcp_unreadable_condition_is_said_not_hidden(gcp: dict[str, Path], tmp_path: Path) -> None:
    head = json.loads(gcp["base"].read_text())
    prov = next(r for r in head["resources"] if r["type"].startswith("gcp:iam/workloadIdentityPoolProvider"))
    prov["inputs"]["attributeCondition"] += " || true"
    d = diff_previews(json.loads(gcp["base"].read_text()), head)
    k = change(d, "gcp:iam/workloadIdentityPoolProvider")
    assert k.error.startswith("head: attributeCondition is not a plain CEL conjunction")
    assert len(k.removed) == 1  # nothing is read from head, so the base's set is not claimed to stay
    assert ":warning: head: attributeCondition is not a plain CEL conjunction" in d.render_markdown()


def test_cel_digest_literals_are_evaluated_by_cel_python() -> None:
    import celpy

    d = "sha256:" + "ab" * 32
    expr = f'assertion.swname == "CONFIDENTIAL_SPACE" && assertion.submods.container.image_digest in ["{d}", r"{d[:-1]}c"]'
    gate = read_gcp_provider({"attributeCondition": expr})
    env = celpy.Environment()
    want = [str(x).removeprefix("sha256:") for x in env.program(env.compile(f'["{d}", r"{d[:-1]}c"]')).evaluate({})]
    assert [dict(s.values)["image_digest"] for s in gate.sets] == want
    assert gate.terms == ('assertion.swname == "CONFIDENTIAL_SPACE"',)
    # two digest clauses are ANDed: only the digests in both are admitted
    both = read_gcp_provider({"attributeCondition": expr + f" && '{d}' == assertion.submods.container.image_digest"})
    assert [dict(s.values) for s in both.sets] == [{"image_digest": "ab" * 32}]
    assert read_gcp_provider({"attributeCondition": "assertion.swname == 'X'"}).error.endswith("no image is pinned")


# -------------------------------------------------------------------------------------- Azure
def vhd_manifest(directory: Path, version: str) -> Path:
    """A vm-image manifest with a real fixed VHD (as tests/test_azure_components.py); made-up hex measurements."""
    directory.mkdir(parents=True, exist_ok=True)
    data = bytes(1 << 20)
    path = directory / "agent-vm.vhd"
    path.write_bytes(data + vhd_footer(len(data), timestamp=0, unique_id=bytes(16)))
    meas = {"roothash": fake_hex(f"{version}:r", 64), "uki_authenticode_sha256": fake_hex(f"{version}:a", 64),
            "uki_authenticode_sha384": fake_hex(f"{version}:b"), "pcr11_sha256": fake_hex(f"{version}:p", 64),
            "pcr11_sha384": fake_hex(f"{version}:q")}
    details = {"formats": {"vhd": {"file_name": path.name, "size": path.stat().st_size,
                                   "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}},
               "initrd": {"modules": ["kernel/drivers/hv/hv_vmbus.ko", "kernel/drivers/scsi/hv_storvsc.ko"]}}
    m = Manifest(kind=ArtifactKind.VM_IMAGE, name="agent-vm", version=version,
                 artifact=Artifact("agent-vm.raw", len(data), fake_hex("x", 64), fake_hex("x")), measurements=meas,
                 inputs=(), builder=Builder("teeform", "test"), source_date_epoch=0, details=details)
    out = directory / "agent-vm.manifest.json"
    write_manifest(m, out)
    return out


def azure_target(manifest: Path, authority: str = AUTHORITY) -> dict[str, Any]:
    return {"name": "snp", "cloud": "azure", "region": "westeurope", "tee": "sev-snp", "manifests": [str(manifest)],
            "attestation": {"authority": authority}}


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("azdiff")
    v1, v2 = vhd_manifest(tmp / "v1", "1.0.0"), vhd_manifest(tmp / "v2", "1.1.0")
    return {"base": preview(tmp, "base", [azure_target(v1)]),
            "image": preview(tmp, "image", [azure_target(v2)]),
            "authority": preview(tmp, "authority", [azure_target(v1, OTHER_AUTHORITY)])}


def _decoded_release_policy(doc_path: Path) -> dict[str, Any]:
    key = next(r for r in json.loads(doc_path.read_text())["resources"] if r["type"] == "azure-native:keyvault:Key")
    data = key["inputs"]["properties"]["releasePolicy"]["data"]
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def test_azure_new_image_leaves_the_platform_gate_as_it_was_and_says_so(azure: dict[str, Path]) -> None:
    d, md, text, _ = diff(azure["base"], azure["image"])
    assert [k for k in d.key_release if k.kind == "azure-skr"] == []
    assert d.manifests_added and d.manifests_removed  # the image did change
    note = ("azure-native:keyvault:Key snp-key-key pins the platform, not the image: the allowed manifests of "
            "target snp changed, who can obtain this key did not")
    assert any(n.startswith(note) for n in d.notes)
    assert note in md and note in text


def test_azure_release_role_is_read_as_an_identity_gate(azure: dict[str, Path]) -> None:
    from teeform.keyrelease_readers import read_gate

    [ra] = [r for r in json.loads(azure["base"].read_text())["resources"]
            if r["type"] == "azure-native:authorization:RoleAssignment"
            and r["inputs"]["roleDefinitionId"].endswith("/08bbd89e-9f13-488c-ac41-acfcb10c90ab")]  # Azure built-in role
    gate = read_gate(ra["type"], ra["inputs"])
    assert gate is not None and gate.pins == "identity"
    assert [dict(s.values) for s in gate.sets] == [{"principal": ra["inputs"]["principalId"]}]
    other = {**ra["inputs"], "roleDefinitionId": ra["inputs"]["roleDefinitionId"].rsplit("/", 1)[0] + "/acdd72a7"}
    assert read_gate(ra["type"], other) is None


def test_azure_authority_change_is_a_platform_set_removed_and_added(azure: dict[str, Path]) -> None:
    old, new = _decoded_release_policy(azure["base"]), _decoded_release_policy(azure["authority"])

    def flat(policy: dict[str, Any]) -> dict[str, str]:
        [branch] = policy["anyOf"]
        return {"authority": branch["authority"], **{c["claim"]: c["equals"] for c in branch["allOf"]}}

    assert flat(old)["authority"] == AUTHORITY and flat(new)["authority"] == OTHER_AUTHORITY
    assert flat(old)["x-ms-isolation-tee.x-ms-attestation-type"] == "sevsnpvm"
    d, md, text, js = diff(azure["base"], azure["authority"])
    k = change(d, "azure-native:keyvault:Key snp-key-key")
    assert k.pins == "platform" and k.kind == "azure-skr" and k.kept == 0
    assert [dict(s.values) for s in k.added] == [flat(new)] and [dict(s.values) for s in k.removed] == [flat(old)]
    assert k.added[0].manifest == "platform claims"
    assert ("`azure-native:keyvault:Key snp-key-key` (pins the platform, not the image): 1 allowed set(s) added, "
            "1 removed, 0 kept") in md
    assert f"authority={OTHER_AUTHORITY}" in md and "x-ms-isolation-tee.x-ms-attestation-type=sevsnpvm" in md
    assert "key release azure-native:keyvault:Key snp-key-key (pins the platform, not the image): +1 -1 =0" in text
    [j] = js["keyRelease"]
    assert j["pins"] == "platform" and j["added"][0]["measurements"] == flat(new)


def test_azure_release_policy_grammar_is_read_as_or_of_and() -> None:
    policy = {"version": "1.0.0", "anyOf": [
        {"authority": "https://a.weu.attest.azure.net", "allOf": [
            {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
            {"anyOf": [{"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"},
                       {"claim": "x-ms-compliance-status", "equals": "azure-compliant-cvm"}]}]},
        {"authority": "https://b.weu.attest.azure.net", "allOf": [{"claim": "x-ms-attestation-type", "equals": "tdxvm"}]},
    ]}
    data = base64.urlsafe_b64encode(json.dumps(policy).encode()).rstrip(b"=").decode()
    gate = read_azure_key({"properties": {"releasePolicy": {"data": data}}})
    assert gate is not None and gate.pins == "platform"
    assert [dict(s.values) for s in gate.sets] == [
        {"authority": "https://a.weu.attest.azure.net", "x-ms-isolation-tee.x-ms-attestation-type": "sevsnpvm",
         "x-ms-isolation-tee.x-ms-compliance-status": "azure-compliant-cvm"},
        {"authority": "https://a.weu.attest.azure.net", "x-ms-isolation-tee.x-ms-attestation-type": "sevsnpvm",
         "x-ms-compliance-status": "azure-compliant-cvm"},
        {"authority": "https://b.weu.attest.azure.net", "x-ms-attestation-type": "tdxvm"}]
    bad = read_azure_key({"properties": {"releasePolicy": {"data": "not base64!"}}})
    assert bad is not None and bad.sets == () and bad.error.startswith("release policy not read: properties.releasePolicy.data")


# ------------------------------------------------------------------------------------ Trustee
def fake_vm(directory: Path, version: str, *, pcr4: bool = False) -> Path:
    """A vm-image manifest with a raw "disk" of dummy bytes next to it; made-up hex measurements (test data)."""
    label = f"vm@{version}"
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "agent-vm.raw"
    raw.write_bytes(label.encode() * 512)
    meas = {"roothash": fake_hex(f"{label}:r", 64), "uki_authenticode_sha256": fake_hex(f"{label}:a", 64),
            "uki_authenticode_sha384": fake_hex(f"{label}:a"), "pcr11_sha256": fake_hex(f"{label}:11", 64),
            "pcr11_sha384": fake_hex(f"{label}:11"), "rtmr1": fake_hex(f"{label}:rtmr1")}
    if pcr4:
        meas |= {"pcr12_sha256": "0" * 64, "pcr12_sha384": "0" * 96, "pcr4_sha256": fake_hex(f"{label}:4", 64),
                 "pcr4_sha384": fake_hex(f"{label}:4")}
    m = Manifest(kind=ArtifactKind.VM_IMAGE, name="agent-vm", version=version, artifact=Artifact.from_file(raw),
                 measurements=meas, inputs=(), builder=Builder("teeform", "test"), source_date_epoch=0)
    path = directory / "agent-vm.manifest.json"
    write_manifest(m, path)
    return path


def ali_target(manifests: list[Path], **broker: Any) -> dict[str, Any]:
    return {"name": "td", "cloud": "alicloud", "region": "cn-beijing", "tee": "tdx", "manifests": [str(m) for m in manifests],
            "instanceType": "ecs.g8i.xlarge", "zone": "cn-beijing-i",
            "keyBroker": {"deploy": {"adminCidr": "203.0.113.0/24"}, **broker}}


def test_trustee_reference_value_sets_added_and_removed(tmp_path: Path) -> None:
    v1, v2 = fake_vm(tmp_path / "v1", "1"), fake_vm(tmp_path / "v2", "2")
    mrtd = fake_hex("tdvf")
    base = preview(tmp_path, "base", [ali_target([v1])])
    head = preview(tmp_path, "head", [ali_target([v2, v1], mrTd=[mrtd])])
    drop = preview(tmp_path, "drop", [ali_target([v2], mrTd=[mrtd])])
    m1, m2 = measurements(v1), measurements(v2)
    pinned = ("uki_authenticode_sha384", "rtmr1")  # the tdx verifier's claims uki and rtmr_1 (docs/trustee.md)
    d, md, text, _ = diff(base, head)
    k = change(d, "pulumi-python:dynamic/trustee:KbsRegistration td-key-broker-kbs")
    assert k.kind == "trustee-rvps" and k.pins == "image"
    assert [dict(s.values) for s in k.added] == [{n: m2[n] for n in pinned}] and k.removed == () and k.kept == 1
    assert k.added[0].manifest == "td/agent-vm@2 (agent-vm@2)"
    assert k.terms_added == (f"mr_td in [{mrtd}]",)  # the firmware is now pinned too
    assert f"condition `mr_td in [{mrtd}]`" in md and "+ td/agent-vm@2 (agent-vm@2): rtmr1=" in text
    d, _, _, _ = diff(head, drop)
    k = change(d, "pulumi-python:dynamic/trustee:KbsRegistration")
    assert [dict(s.values) for s in k.removed] == [{n: m1[n] for n in pinned}] and k.added == () and k.kept == 1


def test_trustee_tombstone_admits_nothing() -> None:
    payload = {"teeform.td.a1.uki": [], "teeform.td.b2.uki": ["AB" * 48], "teeform.td.mr_td": []}
    msg = {"version": "0.1.0", "type": "sample", "payload": base64.b64encode(json.dumps(payload).encode()).decode()}
    gate = read_trustee({"rvps_message": msg, "verifier": "tdx", "target": "td"})
    assert gate is not None and [dict(s.values) for s in gate.sets] == [{"uki_authenticode_sha384": "ab" * 48}]
    assert gate.terms == ()


def test_hostile_set_products_are_refused_before_they_are_enumerated() -> None:
    """An RVPS payload of 3 claims x 300 values (2.7e7 sets) and an SKR policy whose allOf of 20 two-way
    anyOf has 2^20 branches were enumerated (a hang / memory blow-up in `preview diff`); both are now
    counted first and reported as not compared, like an AWS policy over MAX_RELEASE_SETS."""
    import time

    from teeform.keyrelease_readers import MAX_RELEASE_SETS

    payload = {f"teeform.td.s.{c}": [f"{i:096x}" for i in range(300)] for c in ("uki", "rtmr_1", "rtmr_2")}
    msg = {"version": "0.1.0", "type": "sample", "payload": base64.b64encode(json.dumps(payload).encode()).decode()}
    t0 = time.monotonic()
    gate = read_trustee({"rvps_message": msg, "verifier": "tdx", "target": "td"})
    assert gate is not None and gate.sets == () and f"more than {MAX_RELEASE_SETS}" in (gate.error or "")
    pair = lambda i: {"anyOf": [{"claim": f"c{i}", "equals": "a"}, {"claim": f"c{i}", "equals": "b"}]}  # noqa: E731
    policy = {"version": "1.0.0", "anyOf": [{"authority": "https://a", "allOf": [pair(i) for i in range(20)]}]}
    data = base64.urlsafe_b64encode(json.dumps(policy).encode()).rstrip(b"=").decode()
    bad = read_azure_key({"properties": {"releasePolicy": {"data": data}}})
    assert bad is not None and bad.sets == () and f"more than {MAX_RELEASE_SETS}" in (bad.error or "")
    assert time.monotonic() - t0 < 5
    # Exactly at the bound both are still read: 2^12 = 4096 Azure branches, 4096 Trustee sets.
    policy["anyOf"][0]["allOf"] = [pair(i) for i in range(12)]
    data = base64.urlsafe_b64encode(json.dumps(policy).encode()).rstrip(b"=").decode()
    ok = read_azure_key({"properties": {"releasePolicy": {"data": data}}})
    assert ok is not None and not ok.error and len(ok.sets) == 4096 == MAX_RELEASE_SETS
    payload = {f"teeform.td.s.{c}": [f"{i:096x}" for i in range(64)] for c in ("uki", "rtmr_1")}
    msg["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    gate = read_trustee({"rvps_message": msg, "verifier": "tdx", "target": "td"})
    assert gate is not None and not gate.error and len(gate.sets) == 64 * 64


# ------------------------------------------------------------------------------ AWS NitroTPM
def test_nitro_tpm_pcr_sets_added_and_removed(tmp_path: Path) -> None:
    v1, v2 = fake_vm(tmp_path / "v1", "1", pcr4=True), fake_vm(tmp_path / "v2", "2", pcr4=True)
    vm = {"name": "vm", "cloud": "aws", "region": "eu-west-1", "tee": "nitro-tpm"}
    base = preview(tmp_path, "base", [{**vm, "manifests": [str(v1)]}])
    head = preview(tmp_path, "head", [{**vm, "manifests": [str(v2)]}])
    m1, m2 = measurements(v1), measurements(v2)
    d, md, text, js = diff(base, head)
    k = change(d, "aws:kms/key:Key vm-key-kms")
    pick = lambda m: {"pcr4_sha384": m["pcr4_sha384"], "pcr12_sha384": m["pcr12_sha384"]}  # noqa: E731
    assert [dict(s.values) for s in k.added] == [pick(m2)] and [dict(s.values) for s in k.removed] == [pick(m1)]
    assert k.kept == 0 and k.added[0].actions == ("kms:Decrypt", "kms:GenerateDataKey")
    assert k.added[0].manifest == "vm/agent-vm (agent-vm@2)" and k.removed[0].manifest == "vm/agent-vm (agent-vm@1)"
    assert "`aws:kms/key:Key vm-key-kms`: 1 allowed set(s) added, 1 removed, 0 kept" in md
    assert f"pcr4_sha384={m2['pcr4_sha384'][:16]}" in md
    [j] = [x for x in js["keyRelease"] if x["resource"] == "aws:kms/key:Key vm-key-kms"]
    assert j["added"][0]["measurements"] == pick(m2) and j["pins"] == "image"
