"""The settings parsers the target plug-ins share (teeform.targets.base): CIDRs, ``network.ingress`` rules,
errors re-anchored on the stack file, and the JSON-string config values of teeform.stack.

Every cloud's ingress rules go through one parser, so the same mistake gives the same one-line message
on each cloud, naming the stack file and that cloud's own field path. The expected messages are written
out here (the wording chosen for all four clouds), never taken from the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from teeform.errors import TeeformError
from teeform.stack import StackConfig, read_stack_values
from teeform.targets.base import IngressRule, reanchor

SOURCE = "stacks/Pulumi.dev.yaml"

#: One minimal valid target per cloud whose targets carry ``network.ingress``.
TARGETS: dict[str, dict[str, Any]] = {
    "aws/nitro-enclave": {"cloud": "aws", "region": "eu-west-1", "tee": "nitro-enclave"},
    "aws/nitro-tpm": {"cloud": "aws", "region": "eu-west-1", "tee": "nitro-tpm"},
    "azure/sev-snp": {"cloud": "azure", "region": "westeurope", "tee": "sev-snp",
                      "attestation": {"authority": "https://sharedeus.eus.attest.azure.net"}},
    "gcp/confidential-space": {"cloud": "gcp", "region": "europe-west4", "tee": "confidential-space",
                               "project": "my-project",
                               "imageRepository": "europe-west4-docker.pkg.dev/my-project/teeform/agent"},
    "gcp/tdx": {"cloud": "gcp", "region": "europe-west4", "tee": "tdx", "project": "my-project"},
    "alicloud/tdx": {"cloud": "alicloud", "region": "cn-beijing", "tee": "tdx", "instanceType": "ecs.g8i.xlarge",
                     "zone": "cn-beijing-i", "keyBroker": {"url": "https://kbs.example:8080"}},
}
#: The four clouds the task names (the other pairs reuse one of these parsers).
FOUR = ["aws/nitro-enclave", "azure/sev-snp", "gcp/confidential-space", "alicloud/tdx"]
GOOD_RULE = {"cidr": "203.0.113.0/24", "port": 443}


def target(pair: str, name: str = "t", **over: Any) -> dict[str, Any]:
    manifest = "build/m.json"
    return {"name": name, "manifests": [manifest], **TARGETS[pair], **over}


def load(*targets: dict[str, Any], **values: Any) -> StackConfig:
    return StackConfig.from_values({"environment": "dev", "targets": list(targets), **values}, stack="dev",
                                   source=SOURCE)


def error(*targets: dict[str, Any], **values: Any) -> TeeformError:
    with pytest.raises(TeeformError) as ei:
        load(*targets, **values)
    return ei.value


# ----------------------------------------------------------------------------- ingress rules and CIDRs


@pytest.mark.parametrize("pair", [*FOUR, "aws/nitro-tpm", "gcp/tdx"])
def test_bad_ingress_cidr_is_one_message_on_every_cloud(pair: str) -> None:
    """The same bad CIDR gives the same message on each cloud, naming the file and the cloud's field."""
    good = target("aws/nitro-enclave", name="first")
    e = error(good, target(pair, network={"ingress": [GOOD_RULE, {"cidr": "10.0.0.300/8", "port": 443}]}))
    assert e.path == SOURCE
    assert e.field == "teeform:targets[1].network.ingress[1].cidr"
    assert e.message == "must be an IPv4 or IPv6 CIDR, got '10.0.0.300/8'"
    assert e.render() == ("stacks/Pulumi.dev.yaml: teeform:targets[1].network.ingress[1].cidr: "
                          "must be an IPv4 or IPv6 CIDR, got '10.0.0.300/8'")


@pytest.mark.parametrize("pair", [*FOUR, "aws/nitro-tpm", "gcp/tdx"])
def test_bad_network_cidr_is_the_same_message(pair: str) -> None:
    e = error(target(pair, network={"cidr": "nope"}))
    assert (e.path, e.field, e.message) == (SOURCE, "teeform:targets[0].network.cidr",
                                            "must be an IPv4 or IPv6 CIDR, got 'nope'")


def test_azure_subnet_and_alicloud_admin_cidrs_share_the_message() -> None:
    e = error(target("azure/sev-snp", network={"subnetCidr": "10.43.0.0/33"}))
    assert (e.field, e.message) == ("teeform:targets[0].network.subnetCidr",
                                    "must be an IPv4 or IPv6 CIDR, got '10.43.0.0/33'")
    e = error(target("alicloud/tdx", keyBroker={"deploy": {"adminCidr": "everyone"}}))
    assert (e.field, e.message) == ("teeform:targets[0].keyBroker.deploy.adminCidr",
                                    "must be an IPv4 or IPv6 CIDR, got 'everyone'")


@pytest.mark.parametrize("pair", FOUR)
@pytest.mark.parametrize("rule", [{"cidr": "10.0.0.0/8"}, {"port": 443}, {}])
def test_rule_without_cidr_or_port_needs_both(pair: str, rule: dict[str, Any]) -> None:
    """alicloud used to say "must be a string, got nothing (null)" for a missing cidr."""
    e = error(target(pair, network={"ingress": [rule]}))
    assert (e.path, e.field, e.message) == (SOURCE, "teeform:targets[0].network.ingress[0]",
                                            "needs both 'cidr' and 'port'")


@pytest.mark.parametrize("pair", FOUR)
@pytest.mark.parametrize(("rule", "field", "message"), [
    ({"cidr": 10, "port": 443}, "ingress[0].cidr", "must be a string, got an integer (10)"),
    ({"cidr": "10.0.0.0/8", "port": 0}, "ingress[0].port", "must be between 1 and 65535, got 0"),
    ({"cidr": "10.0.0.0/8", "port": "https"}, "ingress[0].port", "must be an integer, got a string ('https')"),
    ({"cidr": "10.0.0.0/8", "port": 443, "proto": "udp"}, "ingress[0]", "unknown key(s) ['proto']"),
    ("10.0.0.0/8:443", "ingress[0]", "must be a mapping, got a string ('10.0.0.0/8:443')"),
])
def test_other_rule_errors_are_the_same_on_every_cloud(pair: str, rule: Any, field: str, message: str) -> None:
    e = error(target(pair, network={"ingress": [rule]}))
    assert e.field == f"teeform:targets[0].network.{field}" and e.message.startswith(message), e


@pytest.mark.parametrize("pair", FOUR)
def test_ingress_must_be_a_list(pair: str) -> None:
    e = error(target(pair, network={"ingress": GOOD_RULE}))
    assert (e.field, e.message) == ("teeform:targets[0].network.ingress", "must be a list, got a mapping")


@pytest.mark.parametrize("pair", ["aws/nitro-enclave", "aws/nitro-tpm", "azure/sev-snp", "alicloud/tdx"])
def test_rules_with_descriptions(pair: str) -> None:
    """An empty description is accepted on every cloud that has descriptions (alicloud refused "")."""
    rules = [{"cidr": "203.0.113.0/24", "port": 443, "description": "webhook"},
             {"cidr": "2001:db8::/32", "port": "8443", "description": ""}, {"cidr": "10.0.0.1/8", "port": 22}]
    (t,) = load(target(pair, network={"ingress": rules})).targets
    s: Any = t.settings
    got = s.ingress if pair == "alicloud/tdx" else s.network.ingress
    assert got == (IngressRule("203.0.113.0/24", 443, "webhook"), IngressRule("2001:db8::/32", 8443, ""),
                   IngressRule("10.0.0.1/8", 22, ""))


@pytest.mark.parametrize("pair", ["aws/nitro-enclave", "azure/sev-snp", "alicloud/tdx"])
def test_description_must_be_a_string(pair: str) -> None:
    e = error(target(pair, network={"ingress": [{**GOOD_RULE, "description": None}]}))
    assert (e.field, e.message) == ("teeform:targets[0].network.ingress[0].description",
                                    "must be a string, got nothing (null)")


@pytest.mark.parametrize("pair", ["gcp/confidential-space", "gcp/tdx"])
def test_gcp_rules_have_no_description(pair: str) -> None:
    (t,) = load(target(pair, network={"ingress": [GOOD_RULE]})).targets
    assert t.settings.network.ingress == (IngressRule("203.0.113.0/24", 443),)  # type: ignore[attr-defined]
    e = error(target(pair, network={"ingress": [{**GOOD_RULE, "description": "web"}]}))
    assert (e.field, e.message) == ("teeform:targets[0].network.ingress[0]",
                                    "unknown key(s) ['description']; allowed: ['cidr', 'port']")


def test_network_defaults_stay_per_cloud() -> None:
    ts = load(*(target(p, name=p.replace("/", "-")) for p in TARGETS)).targets
    cidrs = {f"{t.cloud.value}/{t.tee.value}": getattr(t.settings, "network", t.settings) for t in ts}
    assert cidrs["aws/nitro-enclave"].cidr == "10.42.0.0/16" and cidrs["aws/nitro-tpm"].cidr == "10.42.0.0/16"
    assert cidrs["azure/sev-snp"].cidr == "10.43.0.0/16" and cidrs["azure/sev-snp"].subnet_cidr == "10.43.0.0/24"
    assert cidrs["gcp/confidential-space"].cidr == "10.43.0.0/24" and cidrs["gcp/tdx"].cidr == "10.44.0.0/24"
    assert cidrs["alicloud/tdx"].cidr == "10.50.0.0/16"
    assert all((n.ingress == ()) for n in cidrs.values())


def test_azure_rule_limit_is_kept() -> None:
    rules = [{"cidr": f"10.0.{i}.0/24", "port": 443} for i in range(101)]
    e = error(target("azure/sev-snp", network={"ingress": rules}))
    assert e.field == "teeform:targets[0].network.ingress" and e.message.startswith("at most 100 ingress rules")


# ----------------------------------------------------------------------------- nitro-tpm: only what it uses


@pytest.mark.parametrize("tee", ["nitro-tpm", "sev-snp"])
@pytest.mark.parametrize(("over", "field"), [
    ({"enclave": {"cpuCount": 2}}, "enclave"),
    ({"ami": "ami-0123456789abcdef0"}, "ami"),
])
def test_nitro_tpm_refuses_enclave_only_keys(tee: str, over: dict[str, Any], field: str) -> None:
    """docs/aws-vm.md "Settings": instanceType, attestation, network, key; nothing of the enclave."""
    e = error(target("aws/nitro-tpm", tee=tee, **over))
    assert (e.path, e.field) == (SOURCE, f"teeform:targets[0].{field}")
    assert e.message == (f"not a setting of aws/{tee} targets (its settings: ['attestation', 'instanceType', 'key', "
                         "'network'])")


def test_nitro_tpm_refuses_enclave_attestation_settings() -> None:
    e = error(target("aws/nitro-tpm", attestation={"pcrs": ["PCR4", "PCR12"], "imageSha384": True}))
    assert (e.field, e.message) == ("teeform:targets[0].attestation",
                                    "unknown key(s) ['imageSha384']; allowed: ['pcrs']")
    e = error(target("aws/nitro-tpm", attestation={"pcrs": ["PCR0", "PCR4", "PCR12"]}))
    assert e.field == "teeform:targets[0].attestation.pcrs" and "unknown NitroTPM PCR(s) ['PCR0']" in e.message


def test_nitro_tpm_plugin_parses_only_its_own_settings() -> None:
    """Called directly (as the stack parser does, with the keys already checked), the plug-in does not
    read an enclave key that slipped through: a bad enclave value is not its concern."""
    from teeform.targets.aws_nitro_tpm import PLUGIN, VmSettings

    s = PLUGIN.parse_settings({"network": {"private": True}, "enclave": {"cpuCount": "many"}, "ami": 5},
                              SOURCE, "teeform:targets[0]")
    assert isinstance(s, VmSettings) and s.network.private and not hasattr(s, "enclave")


LOCKOUT_KEY = {"admins": ["arn:aws:iam::111122223333:role/platform-admin"],
               "deployerArn": "arn:aws:iam::111122223333:role/deploy"}


@pytest.mark.parametrize("pair", ["aws/nitro-enclave", "aws/nitro-tpm"])
@pytest.mark.parametrize(("over", "field", "start"), [
    ({"network": {"private": True, "vpcId": "vpc-1", "subnetId": "subnet-1"}}, "network.private",
     "a private network is created by teeform"),
    ({"network": {"vpcId": "vpc-1"}}, "network", "give both vpcId and subnetId, or neither"),
    ({"network": {"ingress": [{"cidr": "x", "port": 1}]}}, "network.ingress[0].cidr", "must be an IPv4 or IPv6 CIDR"),
    ({"key": {"policyUpdates": "locked"}}, "key.breakGlassRole", "policyUpdates: locked needs key.breakGlassRole"),
    ({"key": LOCKOUT_KEY}, "key.admins", "the key admins ['arn:aws:iam::111122223333:role/platform-admin'] do not "
                                         "include the deployer arn:aws:iam::111122223333:role/deploy"),
])
def test_aws_network_and_key_are_one_parser(pair: str, over: dict[str, Any], field: str, start: str) -> None:
    e = error(target(pair, **over))
    assert (e.path, e.field) == (SOURCE, f"teeform:targets[0].{field}") and e.message.startswith(start), e


def test_lockout_error_is_anchored_with_its_hint() -> None:
    e = error(target("aws/nitro-enclave", key=LOCKOUT_KEY))
    assert e.render().startswith("stacks/Pulumi.dev.yaml: teeform:targets[0].key.admins: the key admins [")
    assert e.hint is not None and "add 'arn:aws:iam::111122223333:role/deploy'" in e.hint


def test_azure_authority_error_is_anchored() -> None:
    e = error(target("azure/sev-snp", attestation={"authority": "https://example.com"}))
    assert (e.path, e.field) == (SOURCE, "teeform:targets[0].attestation.authority")
    assert not e.message.startswith(SOURCE) and "teeform:targets" not in e.message


# ----------------------------------------------------------------------------- reanchor


def test_reanchor_drops_what_is_already_said_and_keeps_other_files() -> None:
    exc = TeeformError("f.yaml: teeform:x: not valid JSON: oops (line 1, column 2)")
    got = reanchor(exc, "f.yaml", "teeform:x")
    assert (got.path, got.field, got.message) == ("f.yaml", "teeform:x", "not valid JSON: oops (line 1, column 2)")
    got = reanchor(TeeformError("f.yaml: too large", hint="h"), Path("f.yaml"))
    assert (got.path, got.field, got.message, got.hint) == ("f.yaml", None, "too large", "h")
    # the path (and field) of another file stay in the message; the check's own field is replaced
    got = reanchor(TeeformError("not a PEM public key", path="keys/a.pub", field="(top)"), "f.yaml", "k[0]", hint="h2")
    assert got.render() == "f.yaml: k[0]: keys/a.pub: (top): not a PEM public key" and got.hint == "h2"
    got = reanchor(TeeformError("admins lack the deployer", field="key.admins", hint="add it"), "f.yaml", "t.key.admins")
    assert got.render() == "f.yaml: t.key.admins: admins lack the deployer" and got.hint == "add it"
    # an error that names the same file and field as its path is not repeated
    got = reanchor(TeeformError("is a private key", path="f.yaml: k[0]"), "f.yaml", "k[0]")
    assert got.render() == "f.yaml: k[0]: is a private key"


def test_inline_pem_error_names_the_field_once() -> None:
    """It used to read ``f.yaml: teeform:trustedManifestKeys[0]: f.yaml: teeform:trustedManifestKeys[0]: ...``."""
    cfg = load(target("aws/nitro-enclave"),
               trustedManifestKeys=["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
    with pytest.raises(TeeformError) as ei:
        cfg.trusted_keys()
    assert ei.value.render().startswith("stacks/Pulumi.dev.yaml: teeform:trustedManifestKeys[0]: not a PEM public key (")
    assert ei.value.render().count("trustedManifestKeys") == 1


def test_missing_key_file_still_names_it(tmp_path: Path) -> None:
    cfg = load(target("aws/nitro-enclave"), trustedManifestKeys=[str(tmp_path / "missing.pub")])
    with pytest.raises(TeeformError) as ei:
        cfg.trusted_keys()
    assert ei.value.field == "teeform:trustedManifestKeys[0]" and str(tmp_path / "missing.pub") in ei.value.message
    assert ei.value.hint and "make demo" in ei.value.hint


def test_bad_stack_yaml_is_anchored_on_the_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: teeform\nruntime: python\n")
    bad = tmp_path / "Pulumi.dev.yaml"
    bad.write_text("config: [unclosed\n")
    with pytest.raises(TeeformError) as ei:
        read_stack_values(tmp_path, "dev")
    assert ei.value.path == str(bad) and ei.value.message.startswith("not valid YAML: ")
    bad.write_bytes(b"config: {a: \xff}\n")
    with pytest.raises(TeeformError) as ei:
        read_stack_values(tmp_path, "dev")
    assert ei.value.path == str(bad) and ei.value.message.startswith("not UTF-8 text")


# ----------------------------------------------------------------------------- JSON-string config values


def test_json_string_values_are_parsed() -> None:
    import json

    t = target("aws/nitro-enclave")
    cfg = StackConfig.from_values({"targets": json.dumps([t]), "trustedManifestKeys": ' ["a.pub", "b.pub"]',
                                   "terraformState": ' {"path": "tf/terraform.tfstate"}'}, stack="dev", source=SOURCE)
    assert [x.name for x in cfg.targets] == ["t"] and cfg.trusted_manifest_keys == ("a.pub", "b.pub")
    assert cfg.terraform_state is not None and cfg.terraform_state.path == "tf/terraform.tfstate"
    # a plain string is a path, not JSON
    assert load(t, trustedManifestKeys="keys/release.pub").trusted_manifest_keys == ("keys/release.pub",)


@pytest.mark.parametrize(("key", "value", "field"), [
    ("targets", "[{", "teeform:targets"),
    ("targets", "agent", "teeform:targets"),  # every string of `targets` is JSON text
    ("trustedManifestKeys", "[1,", "teeform:trustedManifestKeys"),
    ("terraformState", '{"path": "a", "path": "b"}', "teeform:terraformState"),
])
def test_bad_json_string_values_name_the_file_and_field(key: str, value: str, field: str) -> None:
    values: dict[str, Any] = {"targets": [target("aws/nitro-enclave")], key: value}
    with pytest.raises(TeeformError) as ei:
        StackConfig.from_values(values, stack="dev", source=SOURCE)
    e = ei.value
    assert (e.path, e.field) == (SOURCE, field) and not e.message.startswith(SOURCE)
    assert e.render().startswith(f"{SOURCE}: {field}: ") and e.render().count(field) == 1
