"""The ``gcp-*`` policies: each passes on what the program registers for a Confidential Space target and
fails on the change it exists to catch. Tokens are checked against the installed pulumi-gcp SDK."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi_support import REPO, one, policy_violations, resource, run
from test_gcp_confidential_space import cs_target, oci_manifest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

sys.path.insert(0, str(REPO / "policies"))
from teeform_policies import tokens  # noqa: E402
from teeform_policies.gcp import conjuncts, pinned_digests  # noqa: E402

sys.path.remove(str(REPO / "policies"))

INSTANCE = "gcp:compute/instance:Instance"
PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
GCP_POLICIES = ["gcp-wip-condition-pins-digest", "gcp-confidential-space-no-debug-image",
                "gcp-confidential-instance-enabled", "gcp-no-public-ingress", "gcp-kms-key-rotation"]
PROD = {"environment": "prod"}


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("gcp")
    resources, outputs, _ = run([cs_target([oci_manifest(tmp, "2"), oci_manifest(tmp, "1")],
                                           network={"ingress": [{"cidr": "203.0.113.0/24", "port": 443}]})],
                                environment="prod", stack="prod")
    return resources, outputs


def replace(resources: list[Any], typ: str, **changes: Any) -> list[Any]:
    """``resources`` with the one resource of ``typ`` given changed inputs (None deletes a key)."""
    out = []
    for r in resources:
        if r.type == typ:
            inputs = {**r.inputs, **changes}
            new = {"inputs": {k: v for k, v in inputs.items() if v is not None}}
            if r.outputs is not None:  # stack policies read the engine's state (outputs), as at `pulumi up`
                outputs = {**r.outputs, **changes}
                new["outputs"] = {k: v for k, v in outputs.items() if v is not None}
            r = dataclasses.replace(r, **new)
        out.append(r)
    return out


def messages(policy: str, resources: list[Any], config: dict[str, Any] | None = None) -> list[str]:
    return [v.message for v in policy_violations(policy, resources, config)]


@pytest.mark.parametrize("policy", GCP_POLICIES)
def test_the_program_passes_every_gcp_policy_in_prod(program: tuple[list[Any], dict[str, Any]], policy: str) -> None:
    resources, _ = program
    assert messages(policy, resources, PROD) == []


def test_wip_condition_pins_digest_failures(program: tuple[list[Any], dict[str, Any]]) -> None:
    resources, outputs = program
    cond = one(resources, PROVIDER).inputs["attributeCondition"]
    other = "sha256:" + "ee" * 32
    pasted = cond.replace("image_digest in ['", f"image_digest in ['{other}', '")
    (m,) = messages("gcp-wip-condition-pins-digest", replace(resources, PROVIDER, attributeCondition=pasted))
    assert f"pinned image digest {other} is not the image_digest of any MeasurementManifest of target 'cs'" in m
    (m,) = messages("gcp-wip-condition-pins-digest", replace(resources, PROVIDER, attributeCondition=cond + " || true"))
    assert "not a plain conjunction" in m
    no_pin = " && ".join(c for c in conjuncts(cond) or [] if "image_digest" not in c)
    (m,) = messages("gcp-wip-condition-pins-digest", replace(resources, PROVIDER, attributeCondition=no_pin))
    assert "does not pin assertion.submods.container.image_digest" in m
    no_sa = " && ".join(c for c in conjuncts(cond) or [] if "google_service_accounts" not in c)
    (m,) = messages("gcp-wip-condition-pins-digest", replace(resources, PROVIDER, attributeCondition=no_sa))
    assert "lacks the clause '<service account>' in assertion.google_service_accounts" in m
    (m,) = messages("gcp-wip-condition-pins-digest", replace(resources, PROVIDER, attributeCondition=None))
    assert "no attributeCondition" in m
    # a provider for another issuer is not a Confidential Space gate
    other_issuer = replace(resources, PROVIDER, attributeCondition=None, oidc={"issuerUri": "https://token.actions.githubusercontent.com"})
    assert messages("gcp-wip-condition-pins-digest", other_issuer) == []


def test_measurements_match_manifest_reads_gcp_decrypt_grants(program: tuple[list[Any], dict[str, Any]]) -> None:
    resources, _ = program
    iam = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
    assert messages("measurements-match-manifest", resources) == []
    assert not [m for m in messages("policy-coverage", resources) if "gcp:kms" in m]  # claimed: no NOT CHECKED
    grant = next(r for r in resources if r.type == iam)
    pasted = grant.inputs["member"].rsplit("sha256:", 1)[0] + "sha256:" + "ee" * 32
    changed = [replace([r], iam, member=pasted)[0] if r.urn == grant.urn else r for r in resources]
    (m,) = messages("measurements-match-manifest", changed)
    assert f"condition attribute.image_digest value {'ee' * 6}" in m and "does not come from a loaded manifest" in m
    # A decrypt grant that needs no attestation (a plain identity, everyone, a whole pool) is never passed.
    pool = grant.inputs["member"].split("/attribute.image_digest/", 1)[0] + "/*"
    for member in ("allUsers", "serviceAccount:ops@p.iam.gserviceaccount.com", pool):
        changed = [replace([r], iam, member=member)[0] if r.urn == grant.urn else r for r in resources]
        (m,) = messages("measurements-match-manifest", changed)
        assert "NOT CHECKED" in m and f"decrypt grant to {member!r}" in m and "needs no attestation" in m


def test_condition_reader() -> None:
    d = "sha256:" + "ab" * 32
    assert conjuncts("a == 'x&&y' && (b || c) == d") is None  # || anywhere outside strings
    assert conjuncts("a == 'x&&y' && b in ['p', 'q']") == ["a == 'x&&y'", "b in ['p', 'q']"]
    assert conjuncts("!a && b") is None and conjuncts("a != 'x' && b") == ["a != 'x'", "b"]
    assert pinned_digests(f"assertion.submods.container.image_digest == '{d}'") == [d]
    assert pinned_digests(f"('{d}' == assertion.submods.container.image_digest)") == [d]
    assert pinned_digests(f"assertion.submods.container.image_digest in ['{d}', '{d}']") == [d, d]
    assert pinned_digests(f"assertion.submods.container.image_id == '{d}'") is None


def test_no_debug_image(program: tuple[list[Any], dict[str, Any]]) -> None:
    resources, _ = program
    vm = one(resources, INSTANCE).inputs
    debug_disk = {**vm["bootDisk"], "initializeParams": {
        "image": "projects/confidential-space-images/global/images/family/confidential-space-debug"}}
    debug = replace(resources, INSTANCE, bootDisk=debug_disk)
    (m,) = messages("gcp-confidential-space-no-debug-image", debug, PROD)
    assert "the Confidential Space debug image" in m and "bootDisk.initializeParams.image" in m
    assert messages("gcp-confidential-space-no-debug-image", debug, {"environment": "dev"}) == []
    cond = one(resources, PROVIDER).inputs["attributeCondition"]
    no_dbg = " && ".join(c for c in conjuncts(cond) or [] if "dbgstat" not in c)
    (m,) = messages("gcp-confidential-space-no-debug-image", replace(resources, PROVIDER, attributeCondition=no_dbg), PROD)
    assert "lacks the top-level clause assertion.dbgstat == 'disabled-since-boot'" in m
    template = resource(tokens.GCP_COMPUTE_INSTANCE_TEMPLATE, {
        "disks": [{"sourceImage": "projects/confidential-space-images/global/images/family/confidential-space-debug"}],
        "confidentialInstanceConfig": {"confidentialInstanceType": "TDX"}, "scheduling": {"onHostMaintenance": "TERMINATE"}})
    assert len(messages("gcp-confidential-space-no-debug-image", [template], PROD)) == 1


@pytest.mark.parametrize(("changes", "expected"), [
    ({"confidentialInstanceConfig": None}, "not a confidential VM"),
    ({"scheduling": {"onHostMaintenance": "MIGRATE"}}, "must use TERMINATE"),
    ({"minCpuPlatform": "AMD Rome"}, "SEV_SNP needs 'AMD Milan'"),
    ({"shieldedInstanceConfig": {"enableVtpm": False}}, "enableVtpm' is false"),
])
def test_confidential_instance_failures(program: tuple[list[Any], dict[str, Any]], changes: dict[str, Any],
                                        expected: str) -> None:
    resources, _ = program
    (m,) = messages("gcp-confidential-instance-enabled", replace(resources, INSTANCE, **changes))
    assert expected in m


def test_sev_on_milan_may_migrate() -> None:
    sev = resource(INSTANCE, {"confidentialInstanceConfig": {"confidentialInstanceType": "SEV"},
                              "minCpuPlatform": "AMD Milan", "scheduling": {"onHostMaintenance": "MIGRATE"}})
    assert messages("gcp-confidential-instance-enabled", [sev]) == []


def test_gcp_no_public_ingress(program: tuple[list[Any], dict[str, Any]]) -> None:
    resources, _ = program
    fw = "gcp:compute/firewall:Firewall"
    (m,) = messages("gcp-no-public-ingress", replace(resources, fw, sourceRanges=["0.0.0.0/0"]))
    assert "field 'sourceRanges' 0.0.0.0/0 opens tcp:443 to the whole internet" in m
    (m,) = messages("gcp-no-public-ingress", replace(resources, fw, sourceRanges=None))  # no source = everyone
    assert "GCP applies 0.0.0.0/0" in m
    nic = [{**one(resources, INSTANCE).inputs["networkInterfaces"][0], "accessConfigs": [{}]}]
    (m,) = messages("gcp-no-public-ingress", replace(resources, INSTANCE, networkInterfaces=nic))
    assert "external IP" in m
    assert messages("gcp-no-public-ingress", replace(resources, INSTANCE, networkInterfaces=nic),
                    {"allowExternalIp": True}) == []


def test_gcp_kms_key_rotation(program: tuple[list[Any], dict[str, Any]]) -> None:
    resources, _ = program
    key = "gcp:kms/cryptoKey:CryptoKey"
    (m,) = messages("gcp-kms-key-rotation", replace(resources, key, rotationPeriod=None))
    assert "never rotates" in m
    (m,) = messages("gcp-kms-key-rotation", replace(resources, key, rotationPeriod=f"{400 * 86400}s"))
    assert "longer than 365 days" in m
    assert messages("gcp-kms-key-rotation", replace(resources, key, rotationPeriod=None, purpose="ASYMMETRIC_SIGN")) == []


@pytest.mark.parametrize("const", sorted(n for n in dir(tokens) if n.startswith("GCP_")))
def test_gcp_tokens_exist_in_the_installed_sdk(const: str) -> None:
    import pulumi_gcp  # noqa: F401 - registers the SDK's resource modules
    from pulumi.runtime.rpc import get_resource_module

    token = getattr(tokens, const)
    pkg, mod, _ = token.split(":")
    module = get_resource_module(pkg, mod, "")
    assert module is not None, token
    cls_name = module.mod_info["classes"].get(token)
    assert cls_name, token
    assert issubclass(getattr(importlib.import_module(module.mod_info["fqn"]), cls_name), pulumi.CustomResource)


def test_preview_of_the_gcp_stack_file_has_no_mandatory_violation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """stacks/Pulumi.gcp.yaml, with its manifest built from a test image, previews clean."""
    import yaml

    from teeform.cli import main

    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.gcp.yaml").read_text())
    from test_gcp_confidential_vm import vm_manifest

    m, vm = oci_manifest(tmp_path), vm_manifest(tmp_path / "vm")
    assert {t["tee"] for t in doc["config"]["teeform:targets"]} == {"confidential-space", "sev-snp"}
    for t in doc["config"]["teeform:targets"]:
        t["manifests"] = [str(m if t["tee"] == "confidential-space" else vm)]
    from test_signing import sign_for_repo_stack

    sign_for_repo_stack(doc, m, tmp_path, vm)  # a prod stack: manifest-signed is mandatory
    stack = tmp_path / "Pulumi.gcp.yaml"
    stack.write_text(yaml.safe_dump(doc))
    rc = main(["preview", "--project-dir", str(REPO), "--stack", "gcp", "--stack-file", str(stack)])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "No mandatory violations." in out
    assert "workload_identity_provider" in out and "kms_key_id" in out and "instance_id" in out
