"""Target plug-in ``gcp``/``confidential-space``: a container workload on Google's Confidential Space image.

Settings (camelCase in YAML)::

    project: my-project                       # GCP project id (required)
    projectNumber: "123456789012"             # optional; default: organizations.getProject(project).number
    zone: europe-west4-a                      # default: <region>-a
    imageRepository: europe-west4-docker.pkg.dev/my-project/teeform/openclaw-agent   # no tag, no digest
    confidentialType: SEV_SNP                 # SEV | SEV_SNP (min_cpu_platform "AMD Milan") | TDX
    machineType: n2d-standard-2               # default: n2d-standard-2 (SEV, SEV_SNP), c3-standard-4 (TDX)
    imageFamily: confidential-space           # or confidential-space-debug (refused in prod / without allowDebug)
    restartPolicy: Never                      # tee-restart-policy: Never | Always | OnFailure
    logRedirect: "false"                      # tee-container-log-redirect: true | false | cloud_logging | serial
    supportAttributes: [STABLE]               # each must be in the token's support_attributes
    network: {cidr: 10.43.0.0/24, ingress: [{cidr: 203.0.113.0/24, port: 443}]}   # default: no ingress
    key:
      protectionLevel: HSM                    # HSM | SOFTWARE
      rotationPeriodDays: 90                  # 1..3650 (Cloud KMS rotation_period)
      location: europe-west4                  # default: the target's region
      encrypters: ["group:secrets-admins@example.com"]   # IAM members allowed to seal (cryptoKeyEncrypter)

Key gate (``components/gcp/confidential_space.py``, facts in ``shared/reference/clouds.md`` §3.1 and
``pulumi.md`` §4.3): a Cloud KMS key whose ``roles/cloudkms.cryptoKeyDecrypter`` is granted only to the
federated principal set ``.../attribute.image_digest/sha256:<digest>`` of each allowed manifest, behind
a Workload Identity Pool provider for the issuer ``https://confidentialcomputing.googleapis.com/``
whose ``attribute_condition`` (:mod:`components.gcp.cel`) requires ``swname == 'CONFIDENTIAL_SPACE'``,
the support attributes, ``dbgstat == 'disabled-since-boot'``, the workload service account and the
image digest being one of the allowed manifests'. **What it pins**: our container image (its registry
digest, from ``teeform build oci``); the VM image, firmware and launcher are Google's and are pinned
only as "a supported, non-debug Confidential Space image".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teeform.keyrelease import KeyReleasePolicy, measurement_sets
from teeform.targets.base import (
    Cloud,
    IngressRule,
    OutputSpec,
    TargetPlugin,
    TargetSettings,
    TeeType,
    fail,
    read_cidr,
    read_ingress,
    read_int,
    read_map,
    read_opt_str,
    read_str,
    read_str_list,
)

if TYPE_CHECKING:
    from teeform.manifest import Manifest

#: Confidential Space image project and families (pulumi.md §4.3 "Images").
IMAGE_PROJECT = "confidential-space-images"
PRODUCTION_FAMILY = "confidential-space"
DEBUG_FAMILY = "confidential-space-debug"
IMAGE_FAMILIES = (PRODUCTION_FAMILY, DEBUG_FAMILY)
#: ``confidential_instance_config.confidential_instance_type`` values (pulumi-gcp 10.2 docstring).
CONFIDENTIAL_TYPES = ("SEV", "SEV_SNP", "TDX")
#: Default machine type per confidential type (SEV/SEV_SNP: N2D; TDX: C3; pulumi.md §4.3 [MEM]).
DEFAULT_MACHINE = {"SEV": "n2d-standard-2", "SEV_SNP": "n2d-standard-2", "TDX": "c3-standard-4"}
#: SEV_SNP requires this minimum CPU platform (pulumi-gcp 10.2 ``Instance`` docstring).
SNP_MIN_CPU_PLATFORM = "AMD Milan"
RESTART_POLICIES = ("Never", "Always", "OnFailure")
LOG_REDIRECTS = ("true", "false", "cloud_logging", "serial")
SUPPORT_ATTRIBUTES = ("LATEST", "STABLE", "USABLE", "EXPERIMENTAL")
PROTECTION_LEVELS = ("HSM", "SOFTWARE")

#: GCP project id (Resource Manager: 6-30 chars, lowercase letters, digits, hyphens, starts with a letter).
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
#: ``REGISTRY/PATH`` of an image repository, without tag or digest (OCI distribution-spec name grammar).
_REPOSITORY = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")
_ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
#: An IAM member (``user:``, ``group:``, ``serviceAccount:``, ``domain:``, ``principal://``...).
_MEMBER = re.compile(r"^(user|group|serviceAccount|domain|principal|principalSet):\S+$")


#: Allow TCP ``port`` from ``cidr`` to the workload VM (the rule type every cloud shares; a GCP rule has no
#: ``description`` key, so its ``description`` is always empty).
GcpIngressRule = IngressRule
#: The keys of one GCP ingress rule.
GCP_INGRESS_KEYS = frozenset({"cidr", "port"})


@dataclass(frozen=True)
class GcpNetworkConfig:
    """A teeform-created VPC with one subnet of ``cidr`` (Private Google Access on, no external IP)."""

    cidr: str = "10.43.0.0/24"
    ingress: tuple[GcpIngressRule, ...] = ()


@dataclass(frozen=True)
class GcpKeyConfig:
    """Cloud KMS key settings: protection level, rotation period (days), ring location, encrypters."""

    protection_level: str = "HSM"
    rotation_period_days: int = 90
    location: str | None = None
    encrypters: tuple[str, ...] = ()

    @property
    def rotation_period(self) -> str:
        """Cloud KMS ``rotation_period`` (a duration in seconds with suffix ``s``)."""
        return f"{self.rotation_period_days * 86400}s"


@dataclass(frozen=True)
class ConfidentialSpaceSettings(TargetSettings):
    """Typed settings of a ``gcp``/``confidential-space`` target (see the module docstring)."""

    project: str
    image_repository: str
    project_number: str | None = None
    zone: str | None = None
    confidential_type: str = "SEV_SNP"
    machine_type: str | None = None
    image_family: str = PRODUCTION_FAMILY
    restart_policy: str = "Never"
    log_redirect: str = "false"
    support_attributes: tuple[str, ...] = ("STABLE",)
    network: GcpNetworkConfig = field(default_factory=GcpNetworkConfig)
    key: GcpKeyConfig = field(default_factory=GcpKeyConfig)

    @property
    def debug_image(self) -> bool:
        """Whether the debug image family is requested."""
        return self.image_family == DEBUG_FAMILY

    @property
    def image(self) -> str:
        """The boot image path (``projects/confidential-space-images/global/images/family/<family>``)."""
        return f"projects/{IMAGE_PROJECT}/global/images/family/{self.image_family}"

    @property
    def machine(self) -> str:
        """The machine type (given, or the default of the confidential type)."""
        return self.machine_type or DEFAULT_MACHINE[self.confidential_type]


def _choice(v: Any, source: str, fld: str, choices: Sequence[str]) -> str:
    s = read_str(v, source, fld)
    if s not in choices:
        raise fail(f"must be one of {list(choices)}, got {s!r}", source, fld)
    return s


def parse_gcp_network(raw: Any, source: str, fld: str, default_cidr: str) -> GcpNetworkConfig:
    """``network: {cidr, ingress: [{cidr, port}]}`` of a GCP target (shared by the VM plug-ins)."""
    n = read_map(raw, source, fld, {"cidr", "ingress"})
    rules = read_ingress(n.get("ingress"), source, f"{fld}.ingress", keys=GCP_INGRESS_KEYS)
    cidr = read_cidr(n["cidr"], source, f"{fld}.cidr") if "cidr" in n else default_cidr
    return GcpNetworkConfig(cidr, rules)


def parse_gcp_project(raw: Mapping[str, Any], source: str, fld: str) -> tuple[str, str | None, str | None]:
    """``(project, projectNumber, zone)`` of a GCP target (shared by the VM plug-ins)."""
    if "project" not in raw:
        raise fail("missing required key 'project' (the GCP project id)", source, fld)
    project = read_str(raw["project"], source, f"{fld}.project")
    if not _PROJECT.match(project):
        raise fail(f"must be a GCP project id (6-30 lowercase letters, digits, hyphens), got {project!r}", source,
                   f"{fld}.project")
    number = raw.get("projectNumber")
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
    number = read_opt_str(number, source, f"{fld}.projectNumber")
    if number is not None and not (number.isascii() and number.isdigit() and len(number) <= 20):
        raise fail(f"must be the numeric project number, got {number!r}", source, f"{fld}.projectNumber")
    zone = read_opt_str(raw.get("zone"), source, f"{fld}.zone")
    if zone is not None and not _ZONE.match(zone):
        raise fail(f"must be a zone such as europe-west4-a, got {zone!r}", source, f"{fld}.zone")
    return project, number, zone


class ConfidentialSpacePlugin(TargetPlugin):
    """``gcp``/``confidential-space``: see the module docstring."""

    cloud = Cloud.GCP
    tee = TeeType.CONFIDENTIAL_SPACE
    manifest_kinds = frozenset({"oci"})
    settings_keys = frozenset({"project", "projectNumber", "zone", "imageRepository", "confidentialType", "machineType",
                               "imageFamily", "restartPolicy", "logRedirect", "supportAttributes", "network", "key"})
    builder = "components.gcp.confidential_space:build_confidential_space_target"
    outputs = (
        OutputSpec("workload_identity_provider", "full name of the Workload Identity Pool provider (STS audience)"),
        OutputSpec("kms_key_id", "Cloud KMS CryptoKey id (projects/.../cryptoKeys/...)"),
        OutputSpec("instance_id", "Compute Engine instance id of the workload VM"),
        OutputSpec("image_reference", "tee-image-reference: REPOSITORY@sha256:<digest of the deployed manifest>"),
        OutputSpec("service_account", "e-mail of the workload service account"),
        OutputSpec("attribute_condition", "the CEL condition the provider enforces"),
    )
    gate = ("Cloud KMS via Workload Identity Federation: decrypt only for a Confidential Space token of Google's "
            "supported non-debug image running our container image digest (one per allowed manifest) as the "
            "workload service account; pins our container image, not the VM image (Google's)")

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> ConfidentialSpaceSettings:
        """Parse and check the keys of one Confidential Space target (module docstring)."""
        project, number, zone = parse_gcp_project(raw, source, fld)
        if "imageRepository" not in raw:
            raise fail("missing required key 'imageRepository' (REGISTRY/PATH the image is pushed to)", source, fld)
        repo = read_str(raw["imageRepository"], source, f"{fld}.imageRepository")
        if "@" in repo or not _REPOSITORY.match(repo) or ":" in repo.split("/", 1)[1]:
            raise fail(f"must be REGISTRY/PATH without tag or digest (teeform adds @sha256:<digest>), got {repo!r}",
                       source, f"{fld}.imageRepository")
        ctype = _choice(raw.get("confidentialType", "SEV_SNP"), source, f"{fld}.confidentialType", CONFIDENTIAL_TYPES)
        machine = read_opt_str(raw.get("machineType"), source, f"{fld}.machineType")
        family = _choice(raw.get("imageFamily", PRODUCTION_FAMILY), source, f"{fld}.imageFamily", IMAGE_FAMILIES)
        restart = _choice(raw.get("restartPolicy", "Never"), source, f"{fld}.restartPolicy", RESTART_POLICIES)
        log = raw.get("logRedirect", "false")
        if isinstance(log, bool):
            log = "true" if log else "false"
        log = _choice(log, source, f"{fld}.logRedirect", LOG_REDIRECTS)
        sf = f"{fld}.supportAttributes"
        attrs = read_str_list(raw["supportAttributes"], source, sf, non_empty=True) if "supportAttributes" in raw \
            else ("STABLE",)
        for i, a in enumerate(attrs):
            if a not in SUPPORT_ATTRIBUTES:
                raise fail(f"must be one of {list(SUPPORT_ATTRIBUTES)}, got {a!r}", source, f"{sf}[{i}]")
        network = parse_gcp_network(raw.get("network"), source, f"{fld}.network", GcpNetworkConfig.cidr)
        return ConfidentialSpaceSettings(
            project=project, image_repository=repo, project_number=number, zone=zone, confidential_type=ctype,
            machine_type=machine, image_family=family, restart_policy=restart, log_redirect=log,
            support_attributes=tuple(dict.fromkeys(attrs)), network=network, key=parse_gcp_key(raw, source, fld),
        )

    def key_release(self, target_name: str, settings: TargetSettings,
                    manifests: Sequence[tuple[str, Manifest]]) -> KeyReleasePolicy:
        """One set per allowed manifest: its ``image_digest`` (the registry digest of the container image)."""
        return measurement_sets(target_name, [(k, m.measurements) for k, m in manifests], ("image_digest",),
                                field_name="manifests", hints={"image_digest": "build it with `teeform build oci`"})


def parse_gcp_key(raw: Mapping[str, Any], source: str, fld: str) -> GcpKeyConfig:
    """``key: {protectionLevel, rotationPeriodDays, location, encrypters}`` of a GCP target."""
    kf = f"{fld}.key"
    k = read_map(raw.get("key"), source, kf, {"protectionLevel", "rotationPeriodDays", "location", "encrypters"})
    encrypters = read_str_list(k.get("encrypters"), source, f"{kf}.encrypters")
    for i, m in enumerate(encrypters):
        if not _MEMBER.match(m):
            raise fail(f"must be an IAM member (user:, group:, serviceAccount:, domain:, principal:...), got {m!r}",
                       source, f"{kf}.encrypters[{i}]")
    location = read_opt_str(k.get("location"), source, f"{kf}.location")
    return GcpKeyConfig(
        protection_level=_choice(k.get("protectionLevel", "HSM"), source, f"{kf}.protectionLevel", PROTECTION_LEVELS),
        rotation_period_days=read_int(k.get("rotationPeriodDays", 90), source, f"{kf}.rotationPeriodDays", 1, 3650),
        location=location, encrypters=encrypters,
    )


PLUGIN = ConfidentialSpacePlugin()
