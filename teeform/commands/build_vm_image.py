"""``teeform build vm-image``: a UKI + dm-verity GPT disk image and its measurement manifest.

The pipeline itself is :mod:`image_builder.pipelines.build_vm`; this module only parses options into a
frozen :class:`~image_builder.pipelines.build_vm.BuildConfig` and prints the result. See docs/vm-image.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from teeform.errors import TeeformError
from teeform.fsutil import source_date_epoch

_PATH = click.Path(path_type=Path)


@click.command("vm-image")
@click.option("--rootfs", required=True, type=_PATH,
              help="Root file system: a directory, an OCI image layout directory, or a docker-archive tarball.")
@click.option("--kernel", required=True, type=_PATH, help="Linux bzImage (vmlinuz) for the UKI's .linux section.")
@click.option("--modules", type=_PATH, default=None,
              help="Kernel modules: lib/modules/<release> (default: next to --kernel, then /lib/modules).")
@click.option("--stub", required=True, type=_PATH, help="systemd EFI stub (linuxx64.efi.stub); its version sets PCR 11.")
@click.option("--cmdline", "cmdline_extra", default="",
              help="Extra kernel command line, appended to the generated 'roothash=... rootfstype=... console=ttyS0 "
                   "panic=-1' in .cmdline (so it is measured into PCR 11), e.g. 'init=/usr/bin/agent'.")
@click.option("--os-release", type=_PATH, default=None, help="os-release file for .osrel (default: generated).")
@click.option("--out", required=True, type=_PATH, help="Output directory.")
@click.option("--name", default=None, help="Image name (default: the --rootfs base name).")
@click.option("--version", "version", default="0", show_default=True, help="Image version.")
@click.option("--format", "formats", default="raw", show_default=True,
              help="Comma-separated disk formats: raw, vhd, qcow2, gce-tar (raw is always written).")
@click.option("--fs", default="erofs", show_default=True, type=click.Choice(["erofs", "squashfs"]),
              help="Root file system type.")
@click.option("--ovmf", type=_PATH, default=None,
              help="OVMF firmware with SEV metadata: adds snp_launch_digest. With an SNP_KERNEL_HASHES section "
                   "(AmdSev build) it is the digest of a direct boot of this kernel, initrd and command line "
                   "(<name>.initrd is written too); otherwise the firmware-only digest. Debian bookworm's OVMF "
                   "files do not qualify.")
@click.option("--vcpus", type=int, default=1, show_default=True, help="vCPUs assumed by the SEV-SNP prediction.")
@click.option("--vcpu-type", default="EPYC-v4", show_default=True,
              help="QEMU CPU model assumed by the SEV-SNP prediction (EPYC-v4, EPYC-Milan, EPYC-Genoa, ...).")
@click.option("--platform-modules", "platform_modules", default="",
              help="Comma-separated extra initrd driver sets: hyperv (hv_vmbus, hv_storvsc, hv_netvsc, hv_utils, "
                   "for Azure). They change the initrd and so PCR 11.")
def cmd(rootfs: Path, kernel: Path, modules: Path | None, stub: Path, cmdline_extra: str, os_release: Path | None,
        out: Path, name: str | None, version: str, formats: str, fs: str, ovmf: Path | None, vcpus: int,
        vcpu_type: str, platform_modules: str = "") -> None:
    """Build a bootable GPT disk: ESP with a UKI, erofs root, dm-verity hash partition.

    \b
    The UKI's .cmdline carries roothash=<dm-verity root hash>, so PCR 11 and the UKI's
    Authenticode hash pin every byte of the root file system. Outputs in --out:
      <name>.raw (+ .vhd/.qcow2/.tar.gz), <name>.efi, <name>.manifest.json
    The manifest (kind vm-image) records roothash, uki_authenticode_sha256/384 (PCR 4 /
    TDX RTMR1), pcr11_sha256/384 for the stub's systemd version, pcr12_* (expected: nothing
    measured), rtmr1, rtmr2 (stubs >= 256) and snp_launch_digest (with --ovmf), each with
    what it assumes (details.measurement_assumptions). See docs/vm-image.md.
    Hostile OCI layers (.., absolute paths, escaping links, device nodes) are refused.
    Reproducible: set SOURCE_DATE_EPOCH for byte-identical rebuilds.
    """
    from image_builder.pipelines.build_vm import BuildConfig, build_vm_image

    fmts = tuple(dict.fromkeys(["raw", *(f.strip() for f in formats.split(",") if f.strip())]))
    pms = tuple(p.strip() for p in platform_modules.split(",")) if platform_modules.strip() else ()
    if "" in pms or len(set(pms)) != len(pms):  # the sets change the initrd and PCR 11: a typo must not pass
        raise TeeformError(f"must be a comma-separated list of distinct names, got {platform_modules!r}",
                           field="--platform-modules", hint="e.g. --platform-modules hyperv")
    config = BuildConfig(
        rootfs=rootfs, kernel=kernel, stub=stub, out=out,
        name=name or (rootfs.resolve().name.split(".")[0] or "vm-image"),
        version=version, modules=modules, cmdline_extra=cmdline_extra, os_release=os_release, formats=fmts, fs=fs,
        ovmf=ovmf, vcpus=vcpus, vcpu_type=vcpu_type, source_date_epoch=source_date_epoch(),
        platform_modules=pms,
    )
    result = build_vm_image(config)
    for fmt, p in result.formats.items():
        click.echo(f"{fmt:8} {p}")
    click.echo(f"{'uki':8} {result.uki}")
    if result.initrd is not None:
        click.echo(f"{'initrd':8} {result.initrd}  (for the SEV-SNP direct boot)")
    click.echo(f"{'manifest':8} {result.manifest}")
    width = max(len(k) for k in result.measurements)
    for k, v in result.measurements.items():
        click.echo(f"  {k.ljust(width)}  {v}")
