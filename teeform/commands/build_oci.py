"""``teeform build oci``: an OCI image layout's registry digest, config digest and platform in a manifest.

The pipeline is :mod:`image_builder.pipelines.build_oci`; this module only parses options and prints the
result. See docs/gcp.md ("Manifest kind oci").
"""

from __future__ import annotations

from pathlib import Path

import click

from teeform.fsutil import source_date_epoch

_PATH = click.Path(path_type=Path)


@click.command("oci")
@click.option("--image", required=True, type=_PATH,
              help="OCI image layout directory (a docker-archive is refused: convert it with "
                   "`skopeo copy docker-archive:x.tar oci:DIR`).")
@click.option("--out", required=True, type=_PATH, help="Output directory.")
@click.option("--name", default=None, help="Manifest name (default: the image's repository name).")
@click.option("--version", "version", default="0", show_default=True, help="Manifest version.")
@click.option("--platform", default=None, help="os/arch[/variant] to pick from a multi-platform index.")
@click.option("--repository", default=None,
              help="REGISTRY/REPO the image will be pushed to (recorded as details.image_reference = REPO@sha256:...).")
def cmd(image: Path, out: Path, name: str | None, version: str, platform: str | None, repository: str | None) -> None:
    """Record the image manifest digest a registry will report, for Confidential Space key release.

    \b
    Writes <name>.manifest.json (kind oci: image_digest, image_id) and <name>.image-manifest.json
    (the exact manifest blob; its sha256 is image_digest). Push without changing the digest:
      skopeo copy --preserve-digests oci:DIR docker://REGISTRY/REPO:TAG
    and reference the image by REGISTRY/REPO@sha256:<image_digest>.
    """
    from image_builder.pipelines.build_oci import OciBuildConfig, build_oci_manifest

    result = build_oci_manifest(OciBuildConfig(image=image, out=out, name=name, version=version, platform=platform,
                                               repository=repository, source_date_epoch=source_date_epoch(0)))
    click.echo(f"manifest        {result.manifest_path}")
    click.echo(f"image manifest  {result.image_manifest_path}")
    click.echo(f"  image_digest  {result.image_digest}")
    click.echo(f"  image_id      {result.config_digest}")
    click.echo(f"  platform      {result.platform}")
    click.echo(f"push: {result.push_command}")
