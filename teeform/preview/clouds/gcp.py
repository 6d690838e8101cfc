"""GCP (pulumi-gcp, prefix ``gcp:``) mocks and summaries for the offline preview.

Ids, names and self links are deterministic (derived from resource names) and shaped as the Compute,
IAM and Cloud KMS APIs return them (``projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>``,
``projects/<number>/locations/global/workloadIdentityPools/<id>``, instance ids are 19-digit numbers).
The project number answered by ``organizations.getProject`` is :data:`MOCK_PROJECT_NUMBER`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from teeform.preview.clouds import CloudPlugin, register

#: Project number the mocks answer for every project (12 digits, like real ones).
MOCK_PROJECT_NUMBER = "123456789012"
MOCK_PROJECT = "teeform-preview"

SERVICE_ACCOUNT = "gcp:serviceaccount/account:Account"
PROJECT_IAM_MEMBER = "gcp:projects/iAMMember:IAMMember"
WIP = "gcp:iam/workloadIdentityPool:WorkloadIdentityPool"
WIP_PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
KEY_RING = "gcp:kms/keyRing:KeyRing"
CRYPTO_KEY = "gcp:kms/cryptoKey:CryptoKey"
CRYPTO_KEY_IAM_MEMBER = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
INSTANCE = "gcp:compute/instance:Instance"
NETWORK = "gcp:compute/network:Network"
SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"
FIREWALL = "gcp:compute/firewall:Firewall"
IMAGE = "gcp:compute/image:Image"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_OBJECT = "gcp:storage/bucketObject:BucketObject"
GET_PROJECT = "gcp:organizations/getProject:getProject"

_COMPUTE = "https://www.googleapis.com/compute/v1"


def _num(seed: str, n: int) -> str:
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16))[:n]


class GcpPlugin(CloudPlugin):
    """Mocks and summaries for pulumi-gcp resources (see the module docstring)."""

    prefix = "gcp:"
    resource_tokens = frozenset({SERVICE_ACCOUNT, PROJECT_IAM_MEMBER, WIP, WIP_PROVIDER, KEY_RING, CRYPTO_KEY,
                                 CRYPTO_KEY_IAM_MEMBER, INSTANCE, NETWORK, SUBNETWORK, FIREWALL, IMAGE, BUCKET,
                                 BUCKET_OBJECT})
    invoke_tokens = frozenset({GET_PROJECT})

    def new_resource(self, typ: str, name: str, inputs: dict[str, Any], region: str) -> tuple[str, dict[str, Any]]:
        """API-shaped ids and outputs (module docstring); ``region`` is unused (GCP names carry it)."""
        state = dict(inputs)
        project = str(inputs.get("project") or MOCK_PROJECT)
        rid = f"{name}-id"
        if typ == SERVICE_ACCOUNT:
            email = f"{inputs.get('accountId')}@{project}.iam.gserviceaccount.com"
            rid = f"projects/{project}/serviceAccounts/{email}"
            state.update(email=email, name=rid, uniqueId=_num(name, 21), member=f"serviceAccount:{email}")
        elif typ == WIP:
            rid = f"projects/{MOCK_PROJECT_NUMBER}/locations/global/workloadIdentityPools/{inputs.get('workloadIdentityPoolId')}"
            state.update(name=rid, state="ACTIVE")
        elif typ == WIP_PROVIDER:
            rid = (f"projects/{MOCK_PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                   f"{inputs.get('workloadIdentityPoolId')}/providers/{inputs.get('workloadIdentityPoolProviderId')}")
            state.update(name=rid, state="ACTIVE")
        elif typ == KEY_RING:
            rid = f"projects/{project}/locations/{inputs.get('location')}/keyRings/{inputs.get('name')}"
        elif typ == CRYPTO_KEY:
            rid = f"{inputs.get('keyRing')}/cryptoKeys/{inputs.get('name')}"
        elif typ in (CRYPTO_KEY_IAM_MEMBER, PROJECT_IAM_MEMBER):
            state.setdefault("etag", _num(name, 12))
        elif typ == INSTANCE:
            rid = f"projects/{project}/zones/{inputs.get('zone')}/instances/{inputs.get('name')}"
            state.update(instanceId=_num(name, 19), selfLink=f"{_COMPUTE}/{rid}", currentStatus="RUNNING")
        elif typ in (NETWORK, FIREWALL, IMAGE):
            kind = {NETWORK: "networks", FIREWALL: "firewalls", IMAGE: "images"}[typ]
            rid = f"projects/{project}/global/{kind}/{inputs.get('name') or name}"
            state.update(selfLink=f"{_COMPUTE}/{rid}")
        elif typ == SUBNETWORK:
            rid = f"projects/{project}/regions/{inputs.get('region')}/subnetworks/{inputs.get('name') or name}"
            state.update(selfLink=f"{_COMPUTE}/{rid}")
        elif typ == BUCKET:
            rid = str(inputs.get("name") or name)
            state.update(url=f"gs://{rid}", selfLink=f"https://www.googleapis.com/storage/v1/b/{rid}")
        elif typ == BUCKET_OBJECT:
            rid = f"{inputs.get('bucket')}-{inputs.get('name')}"
            state.update(mediaLink=f"https://storage.googleapis.com/download/storage/v1/b/{inputs.get('bucket')}/o/"
                                   f"{inputs.get('name')}", md5hash="", crc32c="")
        return rid, state

    def call(self, token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
        """``organizations.getProject``: the asked project with :data:`MOCK_PROJECT_NUMBER`."""
        if token == GET_PROJECT:
            pid = str(args.get("projectId") or MOCK_PROJECT)
            return {"projectId": pid, "number": MOCK_PROJECT_NUMBER, "name": pid, "id": f"projects/{pid}"}
        return {}

    def summarize(self, typ: str, inputs: Mapping[str, Any]) -> list[str]:
        """Instance (machine, image, confidential type, maintenance, tee-image-reference), provider condition,
        key rotation/protection, IAM grants, firewall sources, image features."""
        i = inputs
        if typ == INSTANCE:
            boot = ((i.get("bootDisk") or {}).get("initializeParams") or {}).get("image")
            meta = i.get("metadata") or {}
            return [f"machineType={i.get('machineType')} image={boot}",
                    f"confidentialInstanceType={(i.get('confidentialInstanceConfig') or {}).get('confidentialInstanceType')}"
                    f" minCpuPlatform={i.get('minCpuPlatform')}",
                    f"onHostMaintenance={(i.get('scheduling') or {}).get('onHostMaintenance')}"]+ (
                [f"tee-image-reference={meta['tee-image-reference']}"] if "tee-image-reference" in meta else [])
        if typ == WIP_PROVIDER:
            return [f"issuer={(i.get('oidc') or {}).get('issuerUri')}", f"condition: {i.get('attributeCondition')}"]
        if typ == CRYPTO_KEY:
            vt = i.get("versionTemplate") or {}
            return [f"rotationPeriod={i.get('rotationPeriod')} protectionLevel={vt.get('protectionLevel')}"]
        if typ in (CRYPTO_KEY_IAM_MEMBER, PROJECT_IAM_MEMBER):
            return [f"{i.get('role')} -> {i.get('member')}"]
        if typ == FIREWALL:
            return [f"{i.get('direction')} from {i.get('sourceRanges')} allow {i.get('allows')}"]
        if typ == IMAGE:
            return [f"guestOsFeatures={[f.get('type') for f in i.get('guestOsFeatures') or []]}"]
        return []


PLUGIN = register(GcpPlugin())
