"""The CrossGuard emulation (teeform.preview.crossguard) against the REAL policy-pack analyzer process.

The analyzer is started the way the Pulumi CLI starts a Python policy pack: the plugin shim
``pulumi-analyzer-policy-python`` runs ``python -u -m pulumi.policy <engine-address> <pack dir>``
(pulumi/pulumi ``sdk/python/cmd/pulumi-analyzer-policy-python``; the module is
``pulumi/policy/__main__.py`` of the installed SDK), which runs ``policies/__main__.py``; its
``PolicyPack(...)`` serves the gRPC ``Analyzer`` service on 127.0.0.1 and prints the port on stdout
(pulumi_policy ``policy.py`` ``PolicyPack.__init__``). pulumi.policy parses the engine address but
pulumi-policy 1.21 never dials it, so no Engine server is needed.

The test then plays the engine's part: ``GetAnalyzerInfo``, ``Configure`` with the pack config
reconciled as the CLI does (pulumi/pulumi ``pkg/resource/analyzer/config.go``
``ReconcilePolicyPackConfig``: the policy's reported level, then ``"all"``, then the policy's own
entry; properties = config-schema defaults overlaid with the entry's), one ``Analyze`` per resource
and one ``AnalyzeStack``, with the resources of a mock run of a scenario stack serialised to the
wire form (``pulumi.runtime.rpc.serialize_properties``). The (policy, URN, enforcement level) set must
equal the emulation's, and the message the emulation reports must follow the policy description in
the analyzer's (the analyzer sends ``description + "\\n" + message``).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi.runtime.sync_await import _sync_await
from pulumi_support import REPO, write_fake_eif_manifest

from teeform.preview import evaluate_policies, load_policies, read_pack_config, registered_resources, run_program
from teeform.stack import read_stack_values

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STARTUP_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def analyzer():
    """A stub connected to ``python -u -m pulumi.policy <engine> policies/`` (see the module docstring)."""
    env = {**os.environ, "PULUMI_PROJECT": "teeform", "PULUMI_STACK": "scenario", "PULUMI_DRY_RUN": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(REPO / "policies")],
        cwd=REPO / "policies", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(STARTUP_TIMEOUT_S):
            pytest.fail(f"the analyzer printed no port within {STARTUP_TIMEOUT_S} s")
        line = proc.stdout.readline().decode().strip()
        assert line.isdigit(), f"analyzer did not print a port: {line!r}; stderr: {proc.stderr.read(4000)!r}"
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=STARTUP_TIMEOUT_S)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait()


def level_name(value: int) -> str:
    return analyzer_pb2.EnforcementLevel.Name(value).lower()


def reconcile(info: analyzer_pb2.AnalyzerInfo, config: dict) -> dict[str, analyzer_pb2.PolicyConfig]:
    """The CLI's ReconcilePolicyPackConfig (module docstring), from the analyzer's own policy info."""
    out = {}
    for pol in info.policies:
        level = level_name(pol.enforcementLevel)
        schema = json_format.MessageToDict(pol.configSchema.properties) if pol.HasField("configSchema") else {}
        props = {k: v["default"] for k, v in schema.items() if isinstance(v, dict) and "default" in v}
        if isinstance(config.get("all"), str):
            level = config["all"]
        entry = config.get(pol.name)
        if isinstance(entry, str):
            level = entry
        elif isinstance(entry, dict):
            level = entry.get("enforcementLevel", level)
            props.update({k: v for k, v in entry.items() if k != "enforcementLevel"})
        struct = struct_pb2.Struct()
        struct.update(props)
        out[pol.name] = analyzer_pb2.PolicyConfig(
            enforcementLevel=analyzer_pb2.EnforcementLevel.Value(level.upper()), properties=struct
        )
    return out


def wire(inputs: dict) -> struct_pb2.Struct:
    """The inputs as the engine forwards them (Pulumi's property wire form: secrets and assets as signatures)."""
    return _sync_await(rpc.serialize_properties(dict(inputs), {}))


def real_violations(stub, mocks, stack: str, config: dict) -> tuple[set, dict]:
    info = stub.GetAnalyzerInfo(empty_pb2.Empty())
    stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=reconcile(info, config)))
    found: set[tuple[str, str, str]] = set()
    messages: dict[tuple[str, str, str], list[str]] = {}

    def add(diag, urn):
        key = (diag.policyName, diag.urn or urn, level_name(diag.enforcementLevel))
        found.add(key)
        messages.setdefault(key, []).append(diag.message)

    # At `pulumi up` the engine sends AnalyzeStack each resource's outputs, parent, dependencies and
    # property dependencies (pulumi/pulumi proto/pulumi/analyzer.proto AnalyzerResource); here they
    # come from what the mock monitor saw (mocks.registrations), with its URNs mapped to ours.
    regs = mocks.registrations
    ours = {reg.urn: f"urn:pulumi:{stack}::teeform::{typ}::{name}" for (typ, name), reg in regs.items()}
    resources = []
    for r in mocks.resources:
        if r.typ == "pulumi:pulumi:Stack":
            continue
        urn = f"urn:pulumi:{stack}::teeform::{r.typ}::{r.name}"
        props = wire(r.inputs)
        for d in stub.Analyze(analyzer_pb2.AnalyzeRequest(type=r.typ, properties=props, urn=urn, name=r.name)).diagnostics:
            add(d, urn)
        reg = regs[(r.typ, r.name)]
        pdeps = {k: analyzer_pb2.AnalyzerPropertyDependencies(urns=[ours[u] for u in v if u in ours])
                 for k, v in reg.property_dependencies.items()}
        resources.append(analyzer_pb2.AnalyzerResource(
            type=r.typ, properties=wire(reg.state), urn=urn, name=r.name, parent=ours.get(reg.parent, ""),
            dependencies=[ours[u] for u in reg.dependencies if u in ours], propertyDependencies=pdeps))
    for d in stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources)).diagnostics:
        add(d, "")
    return found, messages


def scenario(tmp_path, env: str, **target_changes):
    """The repository's stacks/Pulumi.<env>.yaml pointed at a test manifest, with ``target_changes``."""
    img = write_fake_eif_manifest(tmp_path / "build")
    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    for t in doc["config"]["teeform:targets"]:
        t["manifests"] = [str(img.manifest_path)]
        t.update(target_changes)
    from test_signing import sign_for_repo_stack  # prod pins the demo's signing key: use a test key

    sign_for_repo_stack(doc, img.manifest_path, tmp_path)
    path = tmp_path / f"Pulumi.{env}.yaml"
    path.write_text(yaml.safe_dump(doc))
    values, _ = read_stack_values(REPO, env, path)
    mocks, _ = run_program(REPO, env, values, stack_file=str(path))
    return mocks


@pytest.mark.parametrize(
    "env, changes, expect_violation",
    [
        ("prod", {"network": {"ingress": [{"cidr": "0.0.0.0/0", "port": 22}]}}, ("no-public-ingress", "mandatory")),
        ("dev", {"network": {"ingress": [{"cidr": "::/0", "port": 443}]}}, ("no-public-ingress", "advisory")),
        ("dev", {}, None),
    ],
    ids=["prod-open-ingress", "dev-open-ingress", "dev-clean"],
)
def test_emulation_matches_the_real_analyzer(analyzer, tmp_path, env, changes, expect_violation):
    mocks = scenario(tmp_path, env, **changes)
    cfg_path = REPO / "policies" / "config" / f"{env}.json"
    config = json.loads(cfg_path.read_text())

    emulated = evaluate_policies(registered_resources(mocks, env), load_policies(REPO), read_pack_config(cfg_path, project_dir=REPO))
    real, messages = real_violations(analyzer, mocks, env, config)

    assert {(v.policy, v.urn, v.enforcement) for v in emulated} == real
    for v in emulated:
        assert any(m.endswith("\n" + v.message) for m in messages[(v.policy, v.urn, v.enforcement)]), v
    if expect_violation:
        assert any((p, lvl) == expect_violation and "securityGroupIngressRule" in urn for p, urn, lvl in real), real
    else:
        assert not [v for v in real if v[2] == "mandatory"], real


@pytest.mark.parametrize("env", ["prod", "dev"])
def test_shared_props_proxy_gives_what_a_fresh_proxy_per_policy_gives(tmp_path, env, monkeypatch):
    """evaluate_policies builds one props proxy per resource for all policies (share_props, the
    default); the analyzer builds one per (policy, resource). The same violations, in the same
    order, and no policy of the pack writes into the props it is given (the proxy's only mutator,
    ``_DictProxy.__setitem__``, is recorded)."""
    from pulumi_policy import proxy

    mocks = scenario(tmp_path, env, network={"ingress": [{"cidr": "0.0.0.0/0", "port": 22}]})
    resources = registered_resources(mocks, env)
    cfg = read_pack_config(REPO / "policies" / "config" / f"{env}.json", project_dir=REPO)
    policies = load_policies(REPO)
    writes: list[object] = []
    monkeypatch.setattr(proxy._DictProxy, "__setitem__", lambda self, k, v: writes.append(k))
    shared = evaluate_policies(resources, policies, cfg)
    fresh = evaluate_policies(resources, policies, cfg, share_props=False)
    assert shared == fresh and any(v.policy == "no-public-ingress" for v in shared)
    assert writes == []


KEY_POLICY_PROGRAM = """
import json, sys
sys.path.insert(0, {repo!r})
import pulumi_aws as aws
from components.measurement_manifest import MeasurementManifest, MeasurementManifestArgs

MeasurementManifest("agent-manifest", MeasurementManifestArgs(
    target="agent", name="agent@1", kind="eif", path="agent.manifest.json", sha256="00" * 32,
    measurements={{"PCR0": {agent!r}, "ImageSha384": {agent!r}}}))
MeasurementManifest("other-manifest", MeasurementManifestArgs(
    target="other", name="other@1", kind="eif", path="other.manifest.json", sha256="11" * 32,
    measurements={{"PCR0": {other!r}, "ImageSha384": {other!r}}}))

def policy(pcr0):
    return json.dumps({{"Version": "2012-10-17", "Statement": [{{
        "Sid": "Enclave", "Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::111122223333:role/enclave"}},
        "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {{"StringEqualsIgnoreCase": {{"kms:RecipientAttestation:PCR0": pcr0}}}}}}]}})

key = aws.kms.Key("agent-key", description="agent", enable_key_rotation=True, tags={{"teeform:target": "agent"}})
aws.kms.KeyPolicy("agent-kp", key_id=key.id, policy=policy({pinned!r}))
aws.kms.KeyPolicy("alias-kp", key_id="alias/agent", policy=policy({agent!r}))
"""


@pytest.mark.parametrize("pinned", ["agent", "other"])
def test_standalone_key_policy_is_attributed_like_the_real_analyzer(analyzer, tmp_path, pinned):
    """A KeyPolicy(key_id=key.id) is checked against its key's target (through its keyId property
    dependency and the key's outputs), in the emulation and in the real analyzer alike; a KeyPolicy
    naming an alias stays NOT CHECKED in both."""
    agent, other = "a" * 96, "b" * 96
    (tmp_path / "Pulumi.yaml").write_text("name: teeform\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(KEY_POLICY_PROGRAM.format(
        repo=str(REPO), agent=agent, other=other, pinned=agent if pinned == "agent" else other))
    mocks, _ = run_program(tmp_path, "scenario", {"aws:region": "eu-west-1"})
    resources = registered_resources(mocks, "scenario")
    kp = next(r for r in resources if r.name == "agent-kp")
    key_urn = "urn:pulumi:scenario::teeform::aws:kms/key:Key::agent-key"
    assert kp.property_dependencies["keyId"] == (key_urn,)
    assert next(r for r in resources if r.name == "agent-key").outputs["keyId"] == kp.inputs["keyId"]

    emulated = evaluate_policies(resources, load_policies(REPO), {})
    real, messages = real_violations(analyzer, mocks, "scenario", {})
    assert {(v.policy, v.urn, v.enforcement) for v in emulated} == real
    for v in emulated:
        assert any(m.endswith("\n" + v.message) for m in messages[(v.policy, v.urn, v.enforcement)]), v

    mine = [v for v in emulated if v.policy == "measurements-match-manifest"]
    by_name = {v.resource_name: v.message for v in mine}
    assert by_name["alias-kp"].startswith("NOT CHECKED: ")  # no key of the stack: honest in both
    if pinned == "agent":
        assert "agent-kp" not in by_name  # checked against target agent's manifest, and it matches
    else:
        assert by_name["agent-kp"].startswith(
            "aws:kms/keyPolicy:KeyPolicy 'agent-kp' (policy of aws:kms/key:Key 'agent-key'): ")
        assert "MeasurementManifest of target 'agent'" in by_name["agent-kp"]
