"""Stack config validation: typed targets, and errors that name the stack file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from teeform.errors import TeeformError
from teeform.stack import Cloud, StackConfig, TeeType, load_stack
from teeform.targets.aws_nitro_enclave import NitroSettings

GOOD = {
    "name": "agent",
    "cloud": "aws",
    "region": "eu-west-1",
    "tee": "nitro-enclave",
    "manifests": ["build/a.manifest.json", "build/b.manifest.json"],
    "enclave": {"cpuCount": 2, "memoryMib": 2048},
    "network": {"ingress": [{"cidr": "10.0.0.0/8", "port": 443}]},
    "key": {"deletionWindowDays": 7, "protect": True},
}


def project(tmp_path: Path, stack_cfg: dict) -> Path:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: teeform\nruntime: python\nstackConfigDir: stacks\n"
        "config:\n  environment: {type: string, default: dev}\n  allowDebug: {type: boolean, default: false}\n"
    )
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": stack_cfg}))
    return tmp_path


def test_load_typed(tmp_path: Path):
    root = project(tmp_path, {"teeform:environment": "prod", "teeform:targets": [GOOD]})
    cfg = load_stack(root, "prod")
    assert cfg.is_production and not cfg.allow_debug
    t = cfg.targets[0]
    assert (t.cloud, t.tee) == (Cloud.AWS, TeeType.NITRO_ENCLAVE)
    s = t.nitro
    assert isinstance(t.settings, NitroSettings) and s is t.settings
    assert s.enclave.memory_mib == 2048 and s.key.deletion_window_days == 7 and s.key.protect
    assert s.network.ingress[0].port == 443
    assert cfg.manifest_paths() == [root / "build/a.manifest.json", root / "build/b.manifest.json"]


def test_project_defaults_apply(tmp_path: Path):
    root = project(tmp_path, {"teeform:targets": [GOOD]})
    cfg = load_stack(root, "prod")
    assert cfg.environment == "dev"  # Pulumi.yaml default, as the CLI would materialise it


@pytest.mark.parametrize(
    "change, field, text",
    [
        ({"cloud": "oracle"}, "teeform:targets[0].cloud", "unknown cloud 'oracle'"),
        ({"tee": "tdx"}, "teeform:targets[0].tee", "aws does not offer tdx; it offers ['nitro-enclave', 'nitro-tpm', 'sev-snp']"),
        ({"manifests": []}, "teeform:targets[0].manifests", "non-empty list"),
        ({"enclave": {"cpuCount": "two"}}, "teeform:targets[0].enclave.cpuCount", "must be an integer"),
        ({"key": {"deletionWindowDays": 3}}, "teeform:targets[0].key.deletionWindowDays", "between 7 and 30"),
        ({"attestation": {"pcrs": ["PCR1"]}}, "teeform:targets[0].attestation.pcrs", "must list PCR0"),
        ({"network": {"ingress": [{"cidr": "0.0.0.0/0"}]}}, "teeform:targets[0].network.ingress[0]", "needs both"),
        ({"network": {"vpcId": "vpc-1"}}, "teeform:targets[0].network", "both vpcId and subnetId"),
        ({"enclave": {"cpus": 2}}, "teeform:targets[0].enclave", "unknown key(s) ['cpus']"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, change, field, text):
    root = project(tmp_path, {"teeform:targets": [{**GOOD, **change}]})
    with pytest.raises(TeeformError) as ei:
        load_stack(root, "prod")
    assert ei.value.path == str(root / "stacks" / "Pulumi.prod.yaml")
    assert ei.value.field == field
    assert text in ei.value.message


def test_missing_stack_and_duplicate_names(tmp_path: Path):
    root = project(tmp_path, {"teeform:targets": [GOOD, GOOD]})
    with pytest.raises(TeeformError, match="target names must be unique"):
        load_stack(root, "prod")
    with pytest.raises(TeeformError, match="stack config for 'staging' not found"):
        load_stack(root, "staging")


def test_targets_as_json_string():
    import json

    cfg = StackConfig.from_values({"targets": json.dumps([GOOD])}, stack="dev")
    assert cfg.targets[0].name == "agent" and cfg.environment == "dev"


# ----------------------------------------------------------------------------- hostile input


def stack_file_error(root: Path) -> TeeformError:
    with pytest.raises(TeeformError) as ei:
        load_stack(root, "prod")
    return ei.value


@pytest.mark.parametrize(
    "change, field, text",
    [
        # values of the wrong type are refused, never coerced
        ({"key": {"admins": "arn:aws:iam::111122223333:root"}}, "teeform:targets[0].key.admins", "must be a list, got a string"),
        ({"key": {"admins": {"arn:aws:iam::1:root": 1}}}, "teeform:targets[0].key.admins", "must be a list, got a mapping"),
        ({"key": {"admins": [["arn:aws:iam::1:root"]]}}, "teeform:targets[0].key.admins[0]", "must be a string, got a list"),
        ({"key": {"admins": ["root"]}}, "teeform:targets[0].key.admins[0]", "must be an IAM principal ARN"),
        ({"attestation": {"pcrs": {"PCR0": True}}}, "teeform:targets[0].attestation.pcrs", "must be a list, got a mapping"),
        ({"attestation": {"pcrs": "PCR0"}}, "teeform:targets[0].attestation.pcrs", "must be a list, got a string"),
        ({"attestation": {"pcrs": ["PCR0", "PCR0"]}}, "teeform:targets[0].attestation.pcrs", "lists a PCR twice"),
        ({"name": {"a": 1}}, "teeform:targets[0].name", "must be a string, got a mapping"),
        ({"name": 7}, "teeform:targets[0].name", "must be a string, got an integer (7)"),
        ({"name": "../etc"}, "teeform:targets[0].name", "must be 1-40 letters"),
        ({"region": ["eu-west-1"]}, "teeform:targets[0].region", "must be a string, got a list"),
        ({"region": "EU West"}, "teeform:targets[0].region", "must be a region name"),
        ({"cloud": ["aws"]}, "teeform:targets[0].cloud", "must be a string, got a list"),
        ({"instanceType": 5}, "teeform:targets[0].instanceType", "must be a string"),
        ({"ami": {"id": "ami-1"}}, "teeform:targets[0].ami", "must be a string, got a mapping"),
        ({"manifests": {"a": "b"}}, "teeform:targets[0].manifests", "must be a list, got a mapping"),
        ({"manifests": ["a", 3]}, "teeform:targets[0].manifests[1]", "must be a string, got an integer (3)"),
        ({"network": {"cidr": ["10.0.0.0/8"]}}, "teeform:targets[0].network.cidr", "must be a string, got a list"),
        ({"network": {"cidr": "ten"}}, "teeform:targets[0].network.cidr", "must be an IPv4 or IPv6 CIDR"),
        ({"network": {"ingress": {"cidr": "10.0.0.0/8", "port": 443}}}, "teeform:targets[0].network.ingress", "must be a list, got a mapping"),
        ({"network": {"ingress": "10.0.0.0/8"}}, "teeform:targets[0].network.ingress", "must be a list, got a string"),
        ({"network": {"ingress": [{"cidr": 10, "port": 443}]}}, "teeform:targets[0].network.ingress[0].cidr", "must be a string"),
        ({"network": {"ingress": [{"cidr": "10.0.0.0/8", "port": "²"}]}}, "teeform:targets[0].network.ingress[0].port", "must be an integer"),
        ({"network": {"ingress": [{"cidr": "10.0.0.0/8", "port": 443.5}]}}, "teeform:targets[0].network.ingress[0].port", "must be an integer"),
        ({"network": {"vpcId": 12, "subnetId": 13}}, "teeform:targets[0].network.vpcId", "must be a string"),
        ({"enclave": {"cpuCount": True}}, "teeform:targets[0].enclave.cpuCount", "must be an integer, got true/false"),
        ({"enclave": {"debug": "yes"}}, "teeform:targets[0].enclave.debug", "must be true or false"),
        ({"enclave": [2]}, "teeform:targets[0].enclave", "must be a mapping, got a list"),
        ({"key": {1: 2, "admins": []}}, "teeform:targets[0].key", "keys must be strings"),
        # a key of another plug-in is refused, naming it
        ({"cloud": "azure", "tee": "sev-snp", "enclave": {"cpuCount": 2}}, "teeform:targets[0].enclave",
         "not a setting of azure/sev-snp targets (its settings: ['adminSshPublicKey', 'attestation',"),
        ({"tee": "sev-snp"}, "teeform:targets[0].enclave", "not a setting of aws/sev-snp targets"),
        ({"vm": {}}, "teeform:targets[0].vm", "not a setting of aws/nitro-enclave targets (its settings: ['ami', 'attestation',"),
    ],
)
def test_wrong_types_are_refused(tmp_path: Path, change, field, text):
    root = project(tmp_path, {"teeform:targets": [{**GOOD, **change}]})
    err = stack_file_error(root)
    assert (err.path, err.field) == (str(root / "stacks" / "Pulumi.prod.yaml"), field)
    assert text in err.message, err.message
    assert "\n" not in str(err)


@pytest.mark.parametrize(
    "config, field, text",
    [
        ({"teeform:targets": [GOOD], "teeform:environment": {"name": "prod"}}, "teeform:environment", "must be a string, got a mapping"),
        ({"teeform:targets": [GOOD], "teeform:enviroment": "prod"}, "teeform:enviroment", "unknown key(s) ['enviroment']"),
        ({"teeform:targets": [GOOD], "teeform:allowDebug": "maybe"}, "teeform:allowDebug", "must be true or false"),
        ({"teeform:targets": {"agent": GOOD}}, "teeform:targets", "must be a list, got a mapping"),
        ({"teeform:targets": ["agent"]}, "teeform:targets[0]", "must be a mapping (a target)"),
        ({"teeform:targets": "[1"}, None, "not valid JSON"),
        ({"targets": [{**GOOD, "name": {"x": 1}}]}, "teeform:targets[0].name", "must be a string"),  # project namespace
    ],
)
def test_stack_level_errors(tmp_path: Path, config, field, text):
    err = stack_file_error(project(tmp_path, config))
    assert field is None or err.field == field
    assert text in str(err)


@pytest.mark.parametrize(
    "content, text",
    [
        (b"- just\n- a list\n", "(top level): must be a YAML mapping, got list"),
        (b"config: [a, b]\n", "config: must be a mapping of config keys, got list"),
        (b"config:\n  teeform:targets: \xff\xfe\n", "not UTF-8 text (invalid byte at offset"),
        (b"config: {a: [\n", "not valid YAML"),
        (b"config:\n  1: x\n", "config keys must be strings"),
        (b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n", "alias bomb"),
    ],
)
def test_malformed_stack_files(tmp_path: Path, content, text):
    root = project(tmp_path, {})
    f = root / "stacks" / "Pulumi.prod.yaml"
    f.write_bytes(content)
    err = stack_file_error(root)
    assert err.path == str(f) and text in str(err), str(err)


def test_directory_and_device_as_stack_file(tmp_path: Path):
    root = project(tmp_path, {"teeform:targets": [GOOD]})
    d = tmp_path / "adir"
    d.mkdir()
    with pytest.raises(TeeformError, match="stack config is a directory"):
        load_stack(root, "prod", stack_file=d)
    with pytest.raises(TeeformError, match="stack config is not a regular file"):
        load_stack(root, "prod", stack_file="/dev/zero")
    (root / "Pulumi.yaml").write_text("[not, a, mapping]\n")
    with pytest.raises(TeeformError, match="Pulumi.yaml: \\(top level\\): must be a YAML mapping"):
        load_stack(root, "prod")


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys):
    """The CLI turns a stack error into one line naming file and field, exit status 2."""
    from pulumi_support import REPO

    from teeform.cli import main

    root = project(tmp_path, {"teeform:targets": [{**GOOD, "key": {"admins": "arn:aws:iam::1:root"}}]})
    f = root / "stacks" / "Pulumi.prod.yaml"
    assert main(["preview", "--stack", "prod", "--project-dir", str(REPO), "--stack-file", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Pulumi.prod.yaml: teeform:targets[0].key.admins: must be a list, got a string" in err[0], err
    assert "Traceback" not in "\n".join(err)


# ----------------------------------------------------------------------------- fuzzing

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["aws", "azure", "nitro-enclave", "sev-snp", "tdx", "PCR0",
                                                            "10.0.0.0/8", "eu-west-1", "true", "443", "arn:aws:iam::1:root"]))
_values = st.recursive(_scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(
    st.one_of(st.sampled_from(sorted({*GOOD, "enclave", "attestation", "key", "network", "pcrs", "admins", "ingress",
                                       "cidr", "port", "cpuCount", "vpcId", "subnetId", "ami", "instanceType"})),
              st.text(max_size=6), st.integers()), c, max_size=5)), max_leaves=20)
_targets = st.one_of(
    _values,
    st.lists(st.fixed_dictionaries({}, optional={k: st.one_of(st.just(v), _values) for k, v in
                                                  {**GOOD, "attestation": {"pcrs": ["PCR0"]}, "key": {"admins": []}}.items()}),
             max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(targets=_targets, env=_values, debug=_values)
def test_fuzz_from_values_gives_config_or_teeform_error(targets, env, debug):
    """Any structured input gives a valid StackConfig or a TeeformError, never another exception."""
    try:
        cfg = StackConfig.from_values({"targets": targets, "environment": env, "allowDebug": debug}, stack="dev")
    except TeeformError as e:
        assert e.field is None or e.field.startswith("teeform:"), e.field
        return
    assert cfg.targets and all(isinstance(t.manifests, tuple) and t.manifests for t in cfg.targets)
    assert all(isinstance(m, str) for t in cfg.targets for m in t.manifests)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | st.text(alphabet="config:teeform:targets- []{}&*!\n:'\"ab1", max_size=200).map(str.encode))
def test_fuzz_stack_file_bytes(tmp_path: Path, body):
    """Arbitrary stack-file bytes give a StackConfig or a TeeformError naming the file."""
    root = tmp_path / "p"  # tmp_path is shared by the examples: create the project once
    if not root.exists():
        root.mkdir()
        project(root, {})
    f = tmp_path / "fuzz.yaml"
    f.write_bytes(body)
    try:
        load_stack(root, "prod", stack_file=f)
    except TeeformError as e:
        assert str(f) in str(e)
