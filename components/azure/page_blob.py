"""``VhdPageBlob``: upload the fixed VHD as a **page** blob (a Pulumi dynamic resource).

Why a dynamic resource: Azure creates disks and gallery image versions only from page-blob VHDs
(clouds.md §2.5 step 1; MS Learn "how-to-create-custom-image-confidential-vm"), and
pulumi-azure-native's ``storage.Blob`` cannot create page blobs: its ``BlobType`` enum is
``Block``/``Append`` only in 3.29 (checked against the installed SDK,
``pulumi_azure_native/storage/_enums.py``; pulumi/pulumi-azure-native#2151 "Page blobs not supported?",
open). So the upload uses ``azure-storage-blob``'s ``BlobClient.upload_blob(blob_type=PAGEBLOB)``
with the storage account key (``storage.list_storage_account_keys``), inside ``pulumi up`` only.

The resource is replaced when the VHD's SHA-256 changes (a new image is a new blob name as well,
``vhd/sha256/<hex>.vhd``, so a rollout never overwrites the blob an image version was made from).
Under ``teeform preview`` (mocks) no provider method runs. The Azure calls are
[UNVERIFIED: no Azure account was used]; the size rule (a page blob is a multiple of 512 bytes; a
fixed VHD is 1 MiB-aligned data + a 512-byte footer) is checked before anything is registered.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic as dyn

#: Page blobs are made of 512-byte pages (Azure Storage "Overview of page blobs").
PAGE = 512


def vhd_blob_name(sha256: str) -> str:
    """``vhd/sha256/<hex>.vhd``: the blob name of a VHD, by its SHA-256 (manifest ``details.formats.vhd.sha256``)."""
    return f"vhd/sha256/{sha256}.vhd"


class _PageBlobProvider(dyn.ResourceProvider):
    """Create/delete a page blob from a local file (azure-storage-blob 12.x)."""

    def _client(self, props: dict[str, Any]) -> Any:
        from azure.storage.blob import BlobClient

        return BlobClient(
            account_url=f"https://{props['accountName']}.blob.core.windows.net",
            container_name=props["containerName"], blob_name=props["blobName"],
            credential={"account_name": props["accountName"], "account_key": props["accountKey"]},
        )

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        from azure.storage.blob import BlobType

        client = self._client(props)
        with open(props["path"], "rb") as fh:
            client.upload_blob(fh, blob_type=BlobType.PAGEBLOB, length=int(props["size"]), overwrite=True,
                               metadata={"sha256": props["sha256"]})
        outs = {k: v for k, v in props.items() if k != "accountKey"}
        return dyn.CreateResult(id_=client.url, outs={**outs, "url": client.url})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        keys = ("accountName", "containerName", "blobName", "sha256", "size")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return dyn.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        self._client(props).delete_blob(delete_snapshots="include")


class VhdPageBlob(dyn.Resource):
    """The VHD at ``path`` (``size`` bytes, SHA-256 ``sha256``) as page blob ``blob_name``; output ``url``."""

    #: ``https://<account>.blob.core.windows.net/<container>/<blob>``, computed from the inputs (the blob
    #: service endpoint form of Azure Storage "Resource URI syntax"), so it is known under mocks as well.
    blob_url: pulumi.Output[str]

    def __init__(self, name: str, *, account_name: pulumi.Input[str], account_key: pulumi.Input[str],
                 container_name: pulumi.Input[str], blob_name: str, path: str, size: int, sha256: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        if size % PAGE:
            raise ValueError(f"a page blob is a multiple of {PAGE} bytes, got {size}")
        props = {
            "accountName": account_name, "accountKey": pulumi.Output.secret(account_key),
            "containerName": container_name, "blobName": blob_name, "path": path, "size": size, "sha256": sha256,
            "url": None,
        }
        super().__init__(_PageBlobProvider(), name, props, opts)
        self.blob_url = pulumi.Output.concat("https://", account_name, ".blob.core.windows.net/", container_name, "/",
                                             blob_name)


__all__ = ["VhdPageBlob", "vhd_blob_name", "PAGE"]
