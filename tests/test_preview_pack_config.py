"""Policy-pack config loading of `teeform preview`: old policy ids resolve through the pack's own
``teeform_policies.resolve_pack_config`` (with a deprecation warning on stderr), bad files are one
line and exit 2."""

from __future__ import annotations

import json

import pytest
from pulumi_support import REPO, nitro_target, write_fake_eif_manifest, write_stack_file

from teeform.cli import main
from teeform.errors import TeeformError
from teeform.preview import read_pack_config
from teeform.preview.crossguard import MAX_PACK_CONFIG_BYTES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_old_ids_are_renamed_with_a_warning(tmp_path, capsys):
    cfg = tmp_path / "pack.json"
    cfg.write_text(json.dumps({"all": "advisory", "kms-key-rotation-enabled": "mandatory", "no-public-ingress": "advisory"}))
    assert read_pack_config(cfg, project_dir=REPO) == {
        "all": "advisory", "aws-kms-key-rotation-enabled": "mandatory", "no-public-ingress": "advisory",
    }
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"warning: {cfg}: policy id 'kms-key-rotation-enabled' is deprecated; use 'aws-kms-key-rotation-enabled' "
        "(teeform resolves it, the Pulumi CLI ignores unknown ids silently)"
    ]


def test_current_ids_give_no_warning(capsys):
    cfg = REPO / "policies" / "config" / "prod.json"
    assert read_pack_config(cfg, project_dir=REPO) == json.loads(cfg.read_text())
    assert capsys.readouterr().err == ""


def test_old_and_new_id_set_differently_is_an_error(tmp_path):
    cfg = tmp_path / "pack.json"
    cfg.write_text(json.dumps({"ec2-imdsv2-required": "advisory", "aws-ec2-imdsv2-required": "mandatory"}))
    with pytest.raises(TeeformError) as exc:
        read_pack_config(cfg, project_dir=REPO)
    assert exc.value.path == str(cfg) and "'aws-ec2-imdsv2-required'" in exc.value.message
    assert not exc.value.message.startswith(str(cfg))  # the path is printed once, by the CLI


def preview(capsys, *args):
    rc = main(["preview", "--project-dir", str(REPO), *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_preview_applies_an_old_id_and_warns(tmp_path, capsys):
    """An old id in --policy-config still sets its policy (here: disables it), as its new id would."""
    from teeform.preview import load_policies, policy_settings

    img = write_fake_eif_manifest(tmp_path / "build")
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([img.manifest_path], instanceType="m6i.xlarge")])
    cfg = tmp_path / "pack.json"
    # aws-kms-key-policy-rewriters is advisory here: the test stack's key is not locked (docs/aws-deploy.md).
    cfg.write_text(json.dumps({"all": "mandatory", "ec2-imdsv2-required": "disabled",
                               "aws-kms-key-policy-rewriters": "advisory"}))
    rc, out, err = preview(capsys, "--stack", "dev", "--stack-file", str(stack), "--policy-config", str(cfg), "--json")
    violations = json.loads(out)["violations"]
    assert rc == 0 and [v["policy"] for v in violations] == ["aws-kms-key-policy-rewriters"], violations
    imds = next(p for p in load_policies(REPO) if p.name == "aws-ec2-imdsv2-required")
    assert policy_settings(imds, read_pack_config(cfg, project_dir=REPO))[0] == "disabled"
    assert policy_settings(imds, {"all": "mandatory", "ec2-imdsv2-required": "disabled"})[0] == "mandatory"  # unresolved
    assert f"warning: {cfg}: policy id 'ec2-imdsv2-required' is deprecated; use 'aws-ec2-imdsv2-required'" in err


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
        (b"[1, 2]", "a policy-pack config must be a JSON object"),
        (b'{"all": "\xff"}', "not UTF-8 text (invalid byte at offset 9)"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON nested 100000 levels deep (limit 64)"),
        (b" " * (MAX_PACK_CONFIG_BYTES + 1),
         f"policy config is {MAX_PACK_CONFIG_BYTES + 1} bytes, over the {MAX_PACK_CONFIG_BYTES}-byte limit"),
    ],
    ids=["syntax", "not-object", "not-utf8", "deep", "too-large"],
)
def test_bad_pack_config_is_one_line(tmp_path, capsys, content, message):
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([img.manifest_path])])
    cfg = tmp_path / "pack.json"
    cfg.write_bytes(content)
    rc, out, err = preview(capsys, "--stack", "dev", "--stack-file", str(stack), "--policy-config", str(cfg))
    assert (rc, out) == (2, "")
    assert err.splitlines()[0] == f"error: {cfg}: {message}"


def test_directory_as_pack_config(tmp_path, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([img.manifest_path])])
    rc, out, err = preview(capsys, "--stack", "dev", "--stack-file", str(stack), "--policy-config", str(tmp_path))
    assert (rc, out) == (2, "")
    assert err.splitlines()[0] == f"error: {tmp_path}: policy config is a directory"
