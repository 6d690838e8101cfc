"""``teeform build eif``: a reproducible Nitro Enclave Image File from an OCI image.

Thin CLI layer: parses options into :class:`image_builder.pipelines.build_eif.EifBuildConfig` and runs
:func:`image_builder.pipelines.build_eif.build_eif`. Everything else (format, PCRs, safety checks) lives in
``image_builder``.
"""

from __future__ import annotations

from pathlib import Path

import click

from teeform.fsutil import source_date_epoch

_BLOBS = "/usr/share/nitro_enclaves/blobs"


@click.command("eif")
@click.option("--image", "image", required=True, type=click.Path(path_type=Path), metavar="PATH",
              help="The application image: an OCI image layout directory (oci-layout + index.json), or an "
                   "uncompressed `docker save` tar (legacy or OCI format). Layers may be tar, tar+gzip or tar+zstd.")
@click.option("--kernel", required=True, type=click.Path(path_type=Path), metavar="FILE",
              help=f"The enclave kernel (bzImage), at most 256 MiB. On a Nitro host: {_BLOBS}/bzImage.")
@click.option("--init", "init", required=True, type=click.Path(path_type=Path), metavar="FILE",
              help=f"The bootstrap init binary put at /init of ramdisk 0 (at most 256 MiB). On a Nitro host: {_BLOBS}/init.")
@click.option("--nsm", required=True, type=click.Path(path_type=Path), metavar="FILE",
              help=f"The Nitro Secure Module driver put at /nsm.ko of ramdisk 0 (at most 256 MiB). On a Nitro host: "
                   f"{_BLOBS}/nsm.ko.")
@click.option("--cmdline", required=True, metavar="TEXT|@FILE",
              help=f"Kernel command line, or @FILE (at most 64 KiB) to read it from a file (e.g. @{_BLOBS}/cmdline). Leading and "
                   "trailing whitespace is removed, as nitro-cli does.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), metavar="DIR",
              help="Output directory; receives NAME.eif and NAME.manifest.json (created if missing).")
@click.option("--name", default=None, metavar="NAME",
              help="Image name stored in the EIF metadata and used for the file names. "
                   "Default: the image's repository name, else 'enclave'.")
@click.option("--version", "version", default=None, metavar="VERSION",
              help="Image version stored in the EIF metadata and the manifest. Default: the image ID "
                   "(config digest without 'sha256:'), as nitro-cli.")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]",
              help="Which image to use from a multi-platform index (e.g. linux/amd64). Needed only when "
                   "the index is ambiguous.")
@click.option("--signing-key", type=click.Path(path_type=Path), default=None, metavar="KEY.pem",
              help="EC P-384 private key (PEM, at most 1 MiB) to sign PCR0; adds a signature section and PCR8. "
                   "Needs --signing-cert.")
@click.option("--signing-cert", type=click.Path(path_type=Path), default=None, metavar="CERT.pem",
              help="X.509 certificate (PEM, at most 1 MiB) of --signing-key; PCR8 is derived from it.")
@click.option("--runtime", is_flag=True,
              help="Layer teeform's enclave runtime into the image (one more measured layer) and run it before the "
                   "agent: it fetches the sealed secrets and credentials from the parent, attests to KMS and starts "
                   "the agent with the secrets (docs/enclave-runtime.md). The image must provide python3 with "
                   "cryptography, cbor2, asn1crypto, botocore and PyYAML.")
@click.option("--runtime-delivery", type=click.Choice(["env", "files"]), default="env", show_default=True,
              help="With --runtime: hand the secrets to the agent as environment variables, or as files in a tmpfs "
                   "directory named by $TEEFORM_SECRETS_DIR.")
def cmd(image: Path, kernel: Path, init: Path, nsm: Path, cmdline: str, out_dir: Path, name: str | None,
        version: str | None, platform: str | None, signing_key: Path | None, signing_cert: Path | None,
        runtime: bool = False, runtime_delivery: str = "env") -> None:
    """Build a reproducible Nitro Enclave Image File (EIF v4) and its measurement manifest.

    \b
    The EIF holds the kernel, the command line, metadata, a bootstrap ramdisk
    (dev/, init, nsm.ko) and a customer ramdisk (the flattened image under rootfs/
    plus /cmd and /env from the image config), as nitro-cli build-enclave does.
    Every layer is verified against its digest while it is read; layers with
    path traversal, escaping links or device nodes are refused.

    \b
    Outputs (nothing is written if the build fails):
      OUT/NAME.eif             the enclave image
      OUT/NAME.manifest.json   PCR0, PCR1, PCR2 (PCR8 when signed), ImageSha384 and input digests

    \b
    Input limits (anything else is refused with one error line, nothing written):
      every file must be a regular file (not a directory, FIFO or device);
      index.json, manifests and configs at most 16 MiB of JSON, nested at most
      64 deep, integers at most 20 digits; layer members: paths <= 4088 bytes,
      names <= 255 bytes, <= 512 directories deep, finite mtimes.

    \b
    Reproducible: the same inputs and SOURCE_DATE_EPOCH (environment variable,
    seconds since 1970; default 0) give a byte-identical EIF and manifest.
    SOURCE_DATE_EPOCH is a measured input: it is the mtime of every ramdisk
    entry (so it changes PCR0, PCR1 and PCR2) and the metadata BuildTime;
    the manifest records it so anyone can rebuild the same PCRs.

    \b
    Example (on a Nitro host):
      teeform build eif --image app.tar --kernel /usr/share/nitro_enclaves/blobs/bzImage \\
        --init /usr/share/nitro_enclaves/blobs/init --nsm /usr/share/nitro_enclaves/blobs/nsm.ko \\
        --cmdline @/usr/share/nitro_enclaves/blobs/cmdline --out build/
    """
    from image_builder.pipelines.build_eif import EifBuildConfig, build_eif, parse_cmdline

    cmdline_bytes, cmdline_source = parse_cmdline(cmdline)
    config = EifBuildConfig(
        image=image, kernel=kernel, init=init, nsm=nsm, cmdline=cmdline_bytes, cmdline_source=cmdline_source,
        out_dir=out_dir, name=name, version=version, signing_key=signing_key, signing_cert=signing_cert,
        platform=platform, source_date_epoch=source_date_epoch(),
    )
    if runtime:
        from image_builder.pipelines.runtime_layer import build_with_runtime

        result = build_with_runtime(config, delivery=runtime_delivery)
    else:
        result = build_eif(config)
    width = max(len(k) for k in result.manifest.measurements)
    for key, value in result.manifest.measurements.items():
        click.echo(f"{key.ljust(width)}  {value}")
