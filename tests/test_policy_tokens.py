"""Policy resource-type tokens, and the tokens the preview's cloud plug-ins name, are checked against the
pinned pulumi-aws SDK (style.md guideline 14); the props the validators read exist in what the mock engine
records for the real program."""

from __future__ import annotations

import sys

import pulumi
import pulumi_aws as aws
import pytest
from pulumi.runtime import settings
from pulumi_support import REPO, by_type, nitro_target, one, run, write_fake_eif_manifest

from components.measurement_manifest import MEASUREMENT_MANIFEST_TYPE
from teeform.preview import make_mocks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

sys.path.insert(0, str(REPO / "policies"))
from teeform_policies import tokens  # noqa: E402

sys.path.remove(str(REPO / "policies"))

#: constant -> a constructor of the pulumi-aws resource it names (minimal required args)
CONSTRUCTORS = {
    "AWS_KMS_KEY": lambda: aws.kms.Key("t"),
    "AWS_KMS_KEY_POLICY": lambda: aws.kms.KeyPolicy("t", key_id="k", policy="{}"),
    "AWS_EC2_LAUNCH_TEMPLATE": lambda: aws.ec2.LaunchTemplate("t"),
    "AWS_EC2_INSTANCE": lambda: aws.ec2.Instance("t"),
    "AWS_EC2_SECURITY_GROUP": lambda: aws.ec2.SecurityGroup("t"),
    "AWS_EC2_SECURITY_GROUP_RULE": lambda: aws.ec2.SecurityGroupRule(
        "t", type="ingress", from_port=1, to_port=1, protocol="tcp", security_group_id="sg"
    ),
    "AWS_VPC_SECURITY_GROUP_INGRESS_RULE": lambda: aws.vpc.SecurityGroupIngressRule("t", security_group_id="sg", ip_protocol="tcp"),
    "AWS_VPC_SECURITY_GROUP_EGRESS_RULE": lambda: aws.vpc.SecurityGroupEgressRule("t", security_group_id="sg", ip_protocol="tcp"),
    "AWS_EBS_VOLUME": lambda: aws.ebs.Volume("t", availability_zone="a"),
    "AWS_S3_BUCKET": lambda: aws.s3.Bucket("t"),
    "AWS_S3_BUCKET_POLICY": lambda: aws.s3.BucketPolicy("t", bucket="b", policy="{}"),
    "AWS_EC2_VPC": lambda: aws.ec2.Vpc("t"),
    "AWS_EC2_DEFAULT_SECURITY_GROUP": lambda: aws.ec2.DefaultSecurityGroup("t"),
    "AWS_EC2_AMI": lambda: aws.ec2.Ami("t"),
}


#: Tokens of providers that are not installed here: checked for the provider's token form only.
OTHER_CLOUDS = {
    "AZURE_NETWORK_SECURITY_GROUP", "AZURE_NETWORK_SECURITY_RULE", "AZURE_KEYVAULT_KEY", "GCP_COMPUTE_FIREWALL",
    "GCP_KMS_CRYPTO_KEY", "ALICLOUD_ECS_SECURITY_GROUP_RULE", "ALICLOUD_KMS_KEY",
}
# GCP tokens are also checked against the installed pulumi-gcp in tests/test_gcp_policies.py.
OTHER_CLOUDS |= {n for n in dir(tokens) if n.startswith("GCP_")}
#: Azure tokens added with issue 10 (pulumi-azure-native installed: tests/test_azure_policies.py checks them in the SDK).
OTHER_CLOUDS |= {"AZURE_COMPUTE_VIRTUAL_MACHINE", "AZURE_KEYVAULT_VAULT", "AZURE_NETWORK_PUBLIC_IP_ADDRESS",
                 "AZURE_NETWORK_INTERFACE"}


#: Issue 11: checked against pulumi-alicloud and teeform's dynamic resource classes in
#: tests/test_alicloud_policies.py.
CHECKED_ELSEWHERE = {"ALICLOUD_ECS_INSTANCE", "ALICLOUD_ECS_SECURITY_GROUP", "ALICLOUD_TDX_INSTANCE",
                     "TRUSTEE_KBS_REGISTRATION"}


def test_every_token_constant_is_checked():
    names = {n for n in dir(tokens) if n.isupper() and isinstance(getattr(tokens, n), str)}
    assert names == set(CONSTRUCTORS) | OTHER_CLOUDS | {"TEEFORM_MEASUREMENT_MANIFEST"} | CHECKED_ELSEWHERE


@pytest.mark.parametrize("const", sorted(OTHER_CLOUDS))
def test_other_cloud_tokens_have_the_provider_form(const):
    import re

    tok = getattr(tokens, const)
    pkg = const.split("_")[0].lower()
    if pkg == "azure":  # azure-native: <pkg>:<module>:<Resource>
        assert re.fullmatch(r"azure-native:[a-z]+:[A-Z][A-Za-z]+", tok), tok
    else:  # bridged providers: <pkg>:<module>/<resourceCamel>:<Resource>, camel = Resource with a lower first letter
        m = re.fullmatch(rf"{pkg}:[a-z]+/([a-z][A-Za-z]+):([A-Z][A-Za-z]+)", tok)
        assert m and m.group(1) == m.group(2)[0].lower() + m.group(2)[1:], tok


@pytest.mark.parametrize("const", sorted(CONSTRUCTORS))
def test_aws_tokens_match_the_sdk(const):
    settings.ROOT.set(None)
    mocks = make_mocks()
    pulumi.runtime.set_mocks(mocks, project="teeform", stack="tokens", preview=False)

    @pulumi.runtime.test
    def _construct():
        CONSTRUCTORS[const]()

    _construct()
    assert [r.typ for r in mocks.resources if r.typ != "pulumi:pulumi:Stack"] == [getattr(tokens, const)]


def test_manifest_token_matches_the_component():
    assert tokens.TEEFORM_MEASUREMENT_MANIFEST == MEASUREMENT_MANIFEST_TYPE


def test_props_read_by_validators_exist_in_program_inputs(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path], network={"ingress": [{"cidr": "10.0.0.0/8", "port": 443}]})])
    lt = one(resources, tokens.AWS_EC2_LAUNCH_TEMPLATE).inputs
    assert {"enclaveOptions", "metadataOptions", "blockDeviceMappings", "userData", "tags", "tagSpecifications"} <= set(lt)
    assert "httpTokens" in lt["metadataOptions"] and "encrypted" in lt["blockDeviceMappings"][0]["ebs"]
    assert lt["tags"]["teeform:role"] == "enclave-host"  # aws-ec2-enclave-enabled's default hostTagKey/hostTagValue
    key = one(resources, tokens.AWS_KMS_KEY).inputs
    assert {"policy", "enableKeyRotation", "customerMasterKeySpec", "keyUsage"} <= set(key)
    assert "launchTemplate" in one(resources, tokens.AWS_EC2_INSTANCE).inputs
    assert "cidrIpv4" in one(resources, tokens.AWS_VPC_SECURITY_GROUP_INGRESS_RULE).inputs
    assert "measurements" in by_type(resources, tokens.TEEFORM_MEASUREMENT_MANIFEST)[0].inputs


# ----------------------------------------------------------------------------- preview cloud plug-ins
#
# Every token a preview cloud plug-in names (teeform.preview.clouds: the mocks' special cases and the
# summaries) must exist in the installed SDK of its provider: a resource token must be in the SDK's
# resource-module registry (what the SDK itself uses to rehydrate resources from URNs,
# ``pulumi.runtime.rpc.get_resource_module``, filled by ``pulumi_<pkg>/__init__.py``'s
# ``_utilities.register``) and the class it maps to must register exactly that token when constructed
# under the mocks (as above, via the class's ``get``, which needs no required inputs); a function
# token must be what the SDK function of that name invokes.

from teeform.preview.clouds import plugins  # noqa: E402


def _sdk_module(prefix: str):
    import importlib

    return importlib.import_module("pulumi_" + prefix.rstrip(":").replace("-", "_"))


#: Prefixes of teeform's own types (components; dynamic providers, whose tokens are checked against the
#: registered resources in tests/test_alicloud_tdx.py and tests/test_trustee_broker.py), not of an SDK.
_OWN_PREFIXES = ("teeform:", "pulumi-python:dynamic/")


def _plugin_tokens(kind: str) -> list[tuple[str, str]]:
    return [(p.prefix, tok) for p in plugins() if not p.prefix.startswith(_OWN_PREFIXES) for tok in sorted(getattr(p, kind))]


def test_every_plugin_has_an_installed_sdk():
    for plugin in plugins():
        if plugin.prefix.startswith(_OWN_PREFIXES):
            continue
        mod = _sdk_module(plugin.prefix)  # ImportError: add the provider SDK to requirements.txt
        assert plugin.resource_tokens or plugin.invoke_tokens, mod.__name__
        assert all(t.startswith(plugin.prefix) for t in plugin.resource_tokens | plugin.invoke_tokens)


@pytest.mark.parametrize("prefix, token", _plugin_tokens("resource_tokens"))
def test_preview_resource_tokens_exist_in_the_sdk(prefix, token):
    import importlib

    from pulumi.runtime.rpc import get_resource_module

    _sdk_module(prefix)  # registers the SDK's resource modules
    pkg, mod, _ = token.split(":")
    module = get_resource_module(pkg, mod, "")
    assert module is not None, f"{token}: no resource module {pkg}:{mod} in the installed SDK"
    cls_name = module.mod_info["classes"].get(token)
    assert cls_name, f"{token}: not a resource of module {pkg}:{mod} (has {sorted(module.mod_info['classes'])})"
    cls = getattr(importlib.import_module(module.mod_info["fqn"]), cls_name)
    assert issubclass(cls, pulumi.CustomResource)

    settings.ROOT.set(None)
    mocks = make_mocks()
    pulumi.runtime.set_mocks(mocks, project="teeform", stack="tokens", preview=False)

    @pulumi.runtime.test
    def _construct():
        cls.get("t", id="t-id")

    _construct()
    assert [r.typ for r in mocks.resources if r.typ != "pulumi:pulumi:Stack"] == [token]


@pytest.mark.parametrize("prefix, token", _plugin_tokens("invoke_tokens"))
def test_preview_invoke_tokens_exist_in_the_sdk(prefix, token):
    import importlib
    import inspect
    import re

    sdk = _sdk_module(prefix)
    _, mod, fn = token.split(":")
    area = mod.split("/")[0]
    module = sdk if area == "index" else importlib.import_module(f"{sdk.__name__}.{area}")
    func = getattr(module, re.sub(r"(?<!^)(?=[A-Z])", "_", fn).lower())
    assert f"'{token}'" in inspect.getsource(func) or f'"{token}"' in inspect.getsource(func), func


def test_preview_teeform_tokens_match_the_components():
    from teeform.preview.clouds.teeform import MEASUREMENT_MANIFEST

    assert MEASUREMENT_MANIFEST == MEASUREMENT_MANIFEST_TYPE
