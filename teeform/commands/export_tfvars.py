"""``teeform export tfvars MANIFEST... --target T --out DIR``: manifests for Terraform.

Writes ``DIR/teeform.auto.tfvars.json`` (measurements per manifest, the per-manifest release conditions and,
with the principals, the complete KMS key policy JSON built by the code the Pulumi component uses) and
``DIR/teeform_variables.tf`` (the matching variable blocks). Format: :mod:`teeform.tfexport`,
docs/terraform.md. Exit 0 when written, 2 for unusable input (nothing is written then).
"""

from __future__ import annotations

from pathlib import Path

import click

from teeform.errors import TeeformError
from teeform.fsutil import display_path


@click.command("tfvars")
@click.argument("manifests", nargs=-1, type=click.Path(path_type=Path))
@click.option("--target", "target_ref", required=True,
              help="A pair such as aws/nitro-enclave, or (with --stack) the name of one of the stack's targets.")
@click.option("--stack", help="Take the target's settings (and, without MANIFEST, its manifests) from this stack.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True,
              help="Directory to write teeform.auto.tfvars.json and teeform_variables.tf into.")
@click.option("--pcrs", help="Without --stack: PCRs to pin, comma-separated (default PCR0,PCR1,PCR2).")
@click.option("--image-sha384/--no-image-sha384", default=True, help="Without --stack: also pin ImageSha384.")
@click.option("--enclave-role-arn", help="The enclave host role: with --deployer-arn, also write the full key policy.")
@click.option("--deployer-arn", help="The principal that seals secrets (Encrypt + DescribeKey).")
@click.option("--admin-arn", "admin_arns", multiple=True, help="Key administrator (repeatable; default: the account root).")
@click.option("--break-glass-arn", help="policyUpdates: locked: the only role that may change the key policy.")
@click.option("--source-vpce", help="KMS interface endpoint id the release statements require (private network).")
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Project directory holding Pulumi.yaml (with --stack).")
def cmd(manifests: tuple[Path, ...], target_ref: str, stack: str | None, out_dir: Path, pcrs: str | None,
        image_sha384: bool, enclave_role_arn: str | None, deployer_arn: str | None, admin_arns: tuple[str, ...],
        break_glass_arn: str | None, source_vpce: str | None, project_dir: Path | None) -> None:
    """Write Terraform variables (teeform.auto.tfvars.json + teeform_variables.tf) for MANIFEST...

    \b
    Examples:
      teeform export tfvars build/demo/openclaw-agent.manifest.json --target aws/nitro-enclave --out infra/ \\
          --enclave-role-arn arn:aws:iam::111122223333:role/agent-host \\
          --deployer-arn arn:aws:iam::111122223333:role/deployer
      teeform export tfvars --stack prod --target agent --out infra/
    """
    from teeform.tfexport import Principals, export_tfvars, parse_pair, target_from_pair

    if bool(enclave_role_arn) != bool(deployer_arn):
        raise TeeformError("give both --enclave-role-arn and --deployer-arn (for the full key policy), or neither")
    paths: list[Path] = list(manifests)
    if stack:
        from teeform.stack import load_stack, project_dir_default

        if pcrs is not None or not image_sha384:
            raise TeeformError("--pcrs/--no-image-sha384 come from the stack's attestation settings with --stack")
        cfg = load_stack(project_dir or project_dir_default(), stack)
        found = [t for t in cfg.targets if t.name == target_ref]
        if not found:
            raise TeeformError(f"no target {target_ref!r}; targets: {[t.name for t in cfg.targets]}", path=cfg.source,
                               field="teeform:targets")
        target = found[0]
        if not paths:
            paths = [p if p.is_absolute() else cfg.project_dir / p for p in map(Path, target.manifests)]
    else:
        cloud, tee = parse_pair(target_ref)
        pins = [p.strip() for p in (pcrs or "PCR0,PCR1,PCR2").split(",") if p.strip()]
        target = target_from_pair(cloud, tee, {"attestation": {"pcrs": pins, "imageSha384": image_sha384}},
                                  name=cloud.value + "-" + tee.value)
    principals = None
    if enclave_role_arn and deployer_arn:
        principals = Principals(enclave_role_arn, deployer_arn, admin_arns, break_glass_arn, source_vpce)
    elif break_glass_arn or admin_arns:
        raise TeeformError("--admin-arn/--break-glass-arn need --enclave-role-arn and --deployer-arn")
    tf, var = export_tfvars(target, paths, out_dir, principals)
    click.echo(f"wrote {display_path(tf)} and {display_path(var)} ({len(paths)} manifest(s), target {target.name}, "
               f"{'with' if principals else 'without'} the full key policy)")
    click.echo(f"  gate  {target.plugin.gate}")
