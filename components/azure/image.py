"""``GalleryImagePipeline``: the fixed VHD -> page blob -> Compute Gallery image definition -> image version.

Steps (clouds.md §2.5, MS Learn "how-to-create-custom-image-confidential-vm"; arguments pulumi.md §4.2,
checked against pulumi-azure-native 3.29):

1. ``storage.StorageAccount`` (StorageV2, Standard_LRS, HTTPS only, TLS 1.2, no public blob access) and a
   private ``storage.BlobContainer``;
2. the VHD as a page blob (:class:`components.azure.page_blob.VhdPageBlob`), named by its SHA-256;
3. ``compute.Gallery``;
4. ``compute.GalleryImage``: ``os_type=Linux``, ``os_state`` (Specialized by default, see
   :mod:`teeform.targets.azure_cvm`), ``hyper_v_generation=V2``, ``features=[SecurityType=ConfidentialVMSupported]``,
   ``architecture=x64``;
5. ``compute.GalleryImageVersion`` (version = the manifest's ``version`` when it is ``MAJOR.MINOR.PATCH``)
   from ``os_disk_image.source`` = the blob URI + the storage account id, replicated to the target's
   region with ``confidential_vm_encryption_type`` ``EncryptedVMGuestStateOnlyWithPmk`` (for
   ``VMGuestStateOnly``) or ``NonPersistedTPM`` (clouds.md §2.5 "Disk encryption options";
   whether a custom image version needs it set is [UNVERIFIED]).

Before anything is registered, :func:`check_vhd` checks the VHD next to the manifest against the
manifest's ``details.formats.vhd`` (size, SHA-256) and its footer (a fixed VHD whose data is a whole
number of MiB, ``image_builder.formats.diskformats``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_azure_native as azn

from components.azure.page_blob import VhdPageBlob, vhd_blob_name
from teeform.errors import TeeformError
from teeform.fsutil import hash_file

MIB = 1 << 20
#: Gallery image version names: ``MAJOR.MINOR.PATCH``, each a 32-bit integer (Compute API).
_VERSION = re.compile(r"^(\d{1,9})\.(\d{1,9})\.(\d{1,9})$")
#: Gallery image version ``confidential_vm_encryption_type`` per VM ``security_encryption_type``.
GALLERY_CVM_ENCRYPTION = {"VMGuestStateOnly": "EncryptedVMGuestStateOnlyWithPmk", "NonPersistedTPM": "NonPersistedTPM"}


@dataclass(frozen=True)
class VhdFile:
    """The checked VHD: path, size in bytes, SHA-256 (lowercase hex)."""

    path: Path
    size: int
    sha256: str


def check_vhd(manifest_path: Path, details: Any) -> VhdFile:
    """The VHD a vm-image manifest lists under ``details.formats.vhd``, checked against the file next to it.

    Raises:
        TeeformError: the manifest lists no VHD (build with ``--format raw,vhd``), the file is missing
            or differs in size or SHA-256, its footer is not a fixed VHD's, or its data is not a whole
            number of MiB (Azure's rule, uki-verity.md §8).
    """
    from image_builder.formats.diskformats import parse_vhd_footer

    vhd = (details or {}).get("formats", {}).get("vhd") if isinstance(details, dict) else None
    if not isinstance(vhd, dict) or not isinstance(vhd.get("file_name"), str):
        raise TeeformError("the manifest lists no VHD (details.formats.vhd); Azure needs a fixed VHD",
                           path=manifest_path, field="details.formats.vhd",
                           hint="rebuild with `teeform build vm-image ... --format raw,vhd`")
    path = manifest_path.parent / Path(vhd["file_name"]).name
    if not path.is_file():
        raise TeeformError(f"the VHD {path.name} described by the manifest is not on disk", path=path,
                           hint=f"build it next to {manifest_path}")
    size = path.stat().st_size
    if size != vhd.get("size"):
        raise TeeformError(f"VHD is {size} bytes but the manifest says {vhd.get('size')}", path=path)
    if size < 512 or (size - 512) % MIB:
        raise TeeformError("a fixed VHD for Azure is a whole number of MiB plus a 512-byte footer", path=path)
    with open(path, "rb") as fh:
        fh.seek(size - 512)
        footer = parse_vhd_footer(fh.read(512))
    if footer.disk_type != 2 or footer.current_size != size - 512:
        raise TeeformError("not a fixed VHD (footer disk type 2, current size = data size)", path=path,
                           field="vhd.footer")
    digest = hash_file(path, ("sha256",))["sha256"]
    if digest != vhd.get("sha256"):
        raise TeeformError("VHD SHA-256 differs from the manifest's details.formats.vhd.sha256", path=path)
    return VhdFile(path, size, digest)


#: Initrd modules (paths under /lib/modules) without which the image cannot find its disk on Azure.
REQUIRED_HYPERV = ("hv_vmbus.ko", "hv_storvsc.ko")


def check_hyperv_drivers(manifest_path: Path, details: Any) -> None:
    """Refuse an image whose initrd lacks the Hyper-V VMBus/storvsc drivers (manifest ``details.initrd.modules``).

    Azure v5 confidential VMs expose the OS disk through storvsc (SCSI over VMBus; clouds.md §2.1), so
    without them the initrd never sees its root.

    Raises:
        TeeformError: naming the manifest and ``details.initrd.modules``; the hint gives the build flag.
    """
    mods = (details or {}).get("initrd", {}).get("modules") if isinstance(details, dict) else None
    names = {str(m).rsplit("/", 1)[-1] for m in mods} if isinstance(mods, list) else set()
    missing = [m for m in REQUIRED_HYPERV if m not in names]
    if missing:
        raise TeeformError(f"the image's initrd has no Hyper-V driver {', '.join(missing)}: on Azure it would not "
                           "find its disk (storvsc, SCSI over VMBus)", path=manifest_path, field="details.initrd.modules",
                           hint="rebuild with `teeform build vm-image ... --format raw,vhd --platform-modules hyperv`")


def image_version_name(version: str) -> str:
    """The gallery image version name for a manifest ``version`` (``MAJOR.MINOR.PATCH`` only).

    Raises:
        TeeformError: any other form (Azure refuses it).
    """
    m = _VERSION.match(version)
    if not m or any(int(g) > 2**31 - 1 for g in m.groups()):
        raise TeeformError(f"manifest version {version!r} is not MAJOR.MINOR.PATCH (32-bit integers), which a "
                           "Compute Gallery image version needs", field="version")
    return version


@dataclass
class GalleryImagePipelineArgs:
    """Inputs of :class:`GalleryImagePipeline`.

    Attributes:
        resource_group_name, location: where everything lives.
        storage_account_name: 3-24 lowercase alnum (``components.azure.names``).
        gallery_name: letters, digits, ``_``.
        image_name: the image definition's name.
        version: gallery image version name (``MAJOR.MINOR.PATCH``).
        vhd: the checked VHD.
        os_state: ``Specialized`` or ``Generalized``.
        disk_security: the VM's ``security_encryption_type`` (picks the gallery CVM encryption type).
        identifier: (publisher, offer, sku) of the image definition.
        tags: Azure tags.
    """

    resource_group_name: pulumi.Input[str]
    location: str
    storage_account_name: str
    gallery_name: str
    image_name: str
    version: str
    vhd: VhdFile
    os_state: str
    disk_security: str
    identifier: tuple[str, str, str]
    tags: dict[str, str]


class GalleryImagePipeline(pulumi.ComponentResource):
    """See the module docstring. Outputs: ``image_version_id``, ``image_id``, ``blob_url``."""

    image_version_id: pulumi.Output[str]

    def __init__(self, name: str, args: GalleryImagePipelineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("teeform:azure:GalleryImagePipeline", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        a = args
        account = azn.storage.StorageAccount(
            f"{name}-sa", resource_group_name=a.resource_group_name, location=a.location,
            account_name=a.storage_account_name, kind="StorageV2", sku=azn.storage.SkuArgs(name="Standard_LRS"),
            enable_https_traffic_only=True, minimum_tls_version="TLS1_2", allow_blob_public_access=False,
            tags=a.tags, opts=child,
        )
        container = azn.storage.BlobContainer(
            f"{name}-vhds", resource_group_name=a.resource_group_name, account_name=account.name,
            container_name="vhds", public_access="None", opts=child,
        )
        keys = azn.storage.list_storage_account_keys_output(resource_group_name=a.resource_group_name,
                                                             account_name=account.name)
        blob = VhdPageBlob(
            f"{name}-vhd", account_name=account.name, account_key=keys.keys[0].value,
            container_name=container.name, blob_name=vhd_blob_name(a.vhd.sha256), path=str(a.vhd.path),
            size=a.vhd.size, sha256=a.vhd.sha256, opts=pulumi.ResourceOptions(parent=self, depends_on=[container]),
        )
        gallery = azn.compute.Gallery(
            f"{name}-gallery", resource_group_name=a.resource_group_name, location=a.location,
            gallery_name=a.gallery_name, description="teeform measured images", tags=a.tags, opts=child,
        )
        publisher, offer, sku = a.identifier
        image = azn.compute.GalleryImage(
            f"{name}-def", resource_group_name=a.resource_group_name, location=a.location,
            gallery_name=gallery.name, gallery_image_name=a.image_name,
            os_type="Linux", os_state=a.os_state, hyper_v_generation="V2", architecture="x64",
            features=[azn.compute.GalleryImageFeatureArgs(name="SecurityType", value="ConfidentialVMSupported")],
            identifier=azn.compute.GalleryImageIdentifierArgs(publisher=publisher, offer=offer, sku=sku),
            tags=a.tags, opts=child,
        )
        version = azn.compute.GalleryImageVersion(
            f"{name}-version", resource_group_name=a.resource_group_name, location=a.location,
            gallery_name=gallery.name, gallery_image_name=image.name, gallery_image_version_name=a.version,
            storage_profile=azn.compute.GalleryImageVersionStorageProfileArgs(
                os_disk_image=azn.compute.GalleryOSDiskImageArgs(
                    source=azn.compute.GalleryDiskImageSourceArgs(uri=blob.blob_url, storage_account_id=account.id),
                ),
            ),
            publishing_profile=azn.compute.GalleryImageVersionPublishingProfileArgs(
                target_regions=[azn.compute.TargetRegionArgs(
                    name=a.location, regional_replica_count=1,
                    encryption=azn.compute.EncryptionImagesArgs(
                        os_disk_image=azn.compute.OSDiskImageEncryptionArgs(
                            security_profile=azn.compute.OSDiskImageSecurityProfileArgs(
                                confidential_vm_encryption_type=GALLERY_CVM_ENCRYPTION[a.disk_security],
                            ),
                        ),
                    ),
                )],
            ),
            tags=a.tags, opts=pulumi.ResourceOptions(parent=self, depends_on=[blob]),
        )
        self.image_version_id = version.id
        self.image_id = image.id
        self.blob_url = blob.blob_url
        self.storage_account_id = account.id
        self.register_outputs({"image_version_id": version.id, "image_id": image.id, "blob_url": blob.blob_url})


__all__ = ["GalleryImagePipeline", "GalleryImagePipelineArgs", "VhdFile", "check_vhd", "image_version_name",
           "GALLERY_CVM_ENCRYPTION"]
