"""Target plug-in ``aws``/``nitro-tpm``: a teeform UKI + dm-verity VM on EC2 whose key is gated on NitroTPM PCRs.

Settings (camelCase in YAML)::

    instanceType: m6i.large                      # x86_64 Nitro type with NitroTPM (the image is amd64)
    attestation: {pcrs: [PCR4, PCR12]}           # default; PCR4 always, plus PCR12 (or PCR7 with Secure Boot)
    network: {private: true}                     # the Nitro target's network settings, parsed by the same code
    key: {admins: [...], deployerArn: ..., policyUpdates: locked, breakGlassRole: ...}   # likewise

These four are the only settings: what only a Nitro Enclave target has (``ami``, ``enclave``,
``attestation.imageSha384``, an EIF PCR such as ``PCR0`` in ``attestation.pcrs``) is refused, naming the field.

Resources (``components/aws/nitro_tpm.py``): the manifest's raw disk in a TLS-only S3 bucket, imported
with ``aws.ebs.SnapshotImport(format="RAW")`` through the ``vmimport`` service role, registered as a
UEFI AMI with NitroTPM (``boot_mode="uefi"``, ``tpm_support="v2.0"``, ``imds_support="v2.0"``), one
instance (IMDSv2 required, no public ingress unless listed) and a KMS key.

Key gate: **our image**, as the NitroTPM of the instance measured it. The key policy has one
statement per allowed manifest; each requires, with ``StringEqualsIgnoreCase``, that the attestation
document in the request's ``Recipient`` carries that manifest's

* ``kms:RecipientAttestation:NitroTPMPCR4`` = ``pcr4_sha384`` (the boot applications: the UKI's
  Authenticode digest, measured by AWS's UEFI firmware), and
* ``kms:RecipientAttestation:NitroTPMPCR12`` = ``pcr12_sha384`` (command-line overrides; all zero
  for a teeform UKI without add-ons). PCR4 alone is not enough: with Secure Boot off, systemd-boot
  may append an external command line that PCR4 does not cover (advisory GHSA-xrv8-2pf5-f3q7;
  ``shared/reference/clouds.md`` §1.1 "Security rule"). ``PCR7`` (the Secure Boot policy) is the
  documented alternative with Secure Boot on; teeform does not predict it yet, so it is refused
  until a ``pcr7_sha384`` measurement exists in :mod:`teeform.measurements`.
* ``PCR11`` (``pcr11_sha384``, systemd-stub's UKI measurement) may be added; whether KMS accepts
  ``NitroTPMPCR11`` is unverified (clouds.md §1.2, §8 question 1).

Condition-key names and value format: AWS KMS developer guide "conditions-nitro-tpm"
(``kms:RecipientAttestation:NitroTPMPCR<PCR_ID>``, lower-case hex SHA-384) and EC2 user guide
"prepare-attestation-service" ("Use PCR4 and PCR12 measurements for standard boot or PCR7
measurements for Secure Boot"); clouds.md §1.1. The NitroTPM document is produced by the NitroTPM
and signed by the Nitro hypervisor (clouds.md §1.2), so the trust root is the Nitro system.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from teeform.keyrelease import KeyReleasePolicy, measurement_sets
from teeform.measurements import BY_NAME
from teeform.targets.aws_nitro_enclave import KeyConfig, NetworkConfig, parse_key, parse_network
from teeform.targets.base import (
    Cloud,
    OutputSpec,
    TargetPlugin,
    TargetSettings,
    TeeType,
    fail,
    read_map,
    read_str,
    read_str_list,
)

if TYPE_CHECKING:
    from teeform.manifest import Manifest

#: NitroTPM PCR a key may pin -> the manifest measurement holding its SHA-384 prediction (the NitroTPM
#: document's PCRs are SHA-384, clouds.md §1.2; KMS compares lower-case hex, §1.1).
NITROTPM_PCR_MEASUREMENTS: dict[str, str] = {
    "PCR4": "pcr4_sha384",
    "PCR7": "pcr7_sha384",
    "PCR11": "pcr11_sha384",
    "PCR12": "pcr12_sha384",
}

#: Prefix of the NitroTPM condition keys (KMS developer guide "conditions-nitro-tpm").
NITROTPM_CONDITION_PREFIX = "kms:RecipientAttestation:NitroTPM"

#: The default pins: PCR4 + PCR12 (standard boot; clouds.md §1.1).
DEFAULT_PCRS = ("PCR4", "PCR12")

#: The instance-type families teeform accepts for a NitroTPM VM: x86_64 Nitro types (the image's
#: kernel is amd64) that the archived NitroTPM prerequisites page lists or that AWS's samples run
#: (clouds.md §1.4). The current list is an open question (clouds.md §8 q4); a type outside it is
#: refused naming ``instanceType`` rather than failing at launch.
NITROTPM_FAMILIES = frozenset({"c5", "m5", "r5", "c6i", "m6i", "r6i", "c6a", "m6a", "r6a", "c7i", "m7i", "m7a"})


def condition_key(pcr: str) -> str:
    """``kms:RecipientAttestation:NitroTPMPCR4`` for ``PCR4``."""
    return NITROTPM_CONDITION_PREFIX + pcr


@dataclass(frozen=True)
class VmAttestationConfig:
    """Which NitroTPM PCRs the key pins (``PCR4`` always, with ``PCR12`` or ``PCR7``; ``PCR11`` optional)."""

    pcrs: tuple[str, ...] = DEFAULT_PCRS

    @property
    def pins(self) -> tuple[str, ...]:
        """The manifest measurement names pinned, in :attr:`pcrs` order (``pcr4_sha384``, ...)."""
        return tuple(NITROTPM_PCR_MEASUREMENTS[p] for p in self.pcrs)


@dataclass(frozen=True)
class VmSettings(TargetSettings):
    """Typed settings of an ``aws``/``nitro-tpm`` (or ``aws``/``sev-snp``) target."""

    instance_type: str = "m6i.large"
    attestation: VmAttestationConfig = field(default_factory=VmAttestationConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    key: KeyConfig = field(default_factory=KeyConfig)


def parse_pcrs(raw: Any, source: str, fld: str) -> VmAttestationConfig:
    """Parse ``attestation`` (``{pcrs: [PCR4, PCR12]}``).

    Raises:
        TeeformError: (field ``<fld>.attestation.pcrs``) an unknown PCR, a repeat, no PCR4, neither
            PCR12 nor PCR7 (clouds.md §1.1 security rule), or PCR7 while teeform records no
            ``pcr7_sha384`` prediction.
    """
    a = read_map(raw, source, f"{fld}.attestation", {"pcrs"})
    pf = f"{fld}.attestation.pcrs"
    pcrs = read_str_list(a["pcrs"], source, pf, non_empty=True) if "pcrs" in a else DEFAULT_PCRS
    unknown = [p for p in pcrs if p not in NITROTPM_PCR_MEASUREMENTS]
    if unknown:
        raise fail(f"unknown NitroTPM PCR(s) {unknown}; pinnable: {list(NITROTPM_PCR_MEASUREMENTS)}", source, pf)
    if len(set(pcrs)) != len(pcrs):
        raise fail(f"lists a PCR twice: {list(pcrs)}", source, pf)
    if "PCR4" not in pcrs:
        raise fail(f"must list PCR4 (the boot applications: our UKI), got {list(pcrs)}", source, pf)
    if "PCR12" not in pcrs and "PCR7" not in pcrs:
        raise fail(f"must list PCR12 (or PCR7 with Secure Boot) with PCR4, got {list(pcrs)}: PCR4 does not cover a "
                   "command line systemd-boot may append with Secure Boot off (GHSA-xrv8-2pf5-f3q7)", source, pf)
    if "PCR7" in pcrs and NITROTPM_PCR_MEASUREMENTS["PCR7"] not in BY_NAME:
        raise fail("PCR7 (the Secure Boot policy) is not predicted by this teeform (no pcr7_sha384 measurement), so "
                   "no manifest can supply its value", source, pf, hint="pin [PCR4, PCR12] instead")
    return VmAttestationConfig(pcrs)


class NitroTpmPlugin(TargetPlugin):
    """``aws``/``nitro-tpm``: see the module docstring."""

    cloud = Cloud.AWS
    tee = TeeType.NITRO_TPM
    manifest_kinds = frozenset({"vm-image"})
    settings_keys = frozenset({"instanceType", "attestation", "network", "key"})
    builder = "components.aws.nitro_tpm:build_nitro_tpm_target"
    outputs: ClassVar[tuple[OutputSpec, ...]] = (
        OutputSpec("nitrotpm_measurements", "per manifest: PCR4, PCR11, PCR12 (SHA-384) and roothash"),
        OutputSpec("ami_id", "id of the UEFI + NitroTPM AMI registered from the imported raw disk"),
        OutputSpec("instance_id", "EC2 id of the VM"),
        OutputSpec("kms_key_arn", "ARN of the KMS key gated on NitroTPM PCRs"),
        OutputSpec("disk_uri", "s3:// URI of the uploaded raw disk"),
    )
    gate = ("AWS KMS key policy: plaintext only to a VM whose NitroTPM attestation document (signed by the Nitro "
            "hypervisor) carries our image's PCR4 and PCR12 as measured by the Nitro UEFI firmware (one statement per "
            "allowed manifest, all of its pinned PCRs together)")
    #: The default instance type of this pair.
    default_instance_type: ClassVar[str] = "m6i.large"

    def check_instance_type(self, instance_type: str, source: str, fld: str) -> None:
        """Refuse an instance type outside :data:`NITROTPM_FAMILIES` (naming ``fld``).

        Raises:
            TeeformError: the type's family is not listed.
        """
        family = instance_type.split(".", 1)[0]
        if "." not in instance_type or family not in NITROTPM_FAMILIES:
            raise fail(f"{instance_type!r} is not an x86_64 instance type with NitroTPM that teeform knows; "
                       f"families: {sorted(NITROTPM_FAMILIES)}", source, fld)

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> VmSettings:
        """Parse ``instanceType``, ``attestation``, and the Nitro target's ``network`` and ``key`` settings
        (:func:`~teeform.targets.aws_nitro_enclave.parse_network` and
        :func:`~teeform.targets.aws_nitro_enclave.parse_key`, the Nitro Enclave target's own parsers, with the
        same checks and messages: private subnet, ingress CIDRs, lockout safety, break-glass role). Nothing
        else of a Nitro Enclave target is parsed: an enclave-only key never reaches this method (the stack
        parser refuses every key outside :attr:`settings_keys`, naming it)."""
        instance_type = read_str(raw.get("instanceType", self.default_instance_type), source, f"{fld}.instanceType")
        self.check_instance_type(instance_type, source, f"{fld}.instanceType")
        attestation = parse_pcrs(raw.get("attestation"), source, fld)
        network = parse_network(raw.get("network"), source, f"{fld}.network")
        key = parse_key(raw.get("key"), source, f"{fld}.key")
        return VmSettings(instance_type, attestation, network, key)

    def key_release(self, target_name: str, settings: TargetSettings,
                    manifests: Sequence[tuple[str, Manifest]]) -> KeyReleasePolicy:
        """One measurement set per allowed manifest: its pinned NitroTPM PCR predictions, all together."""
        assert isinstance(settings, VmSettings)
        rebuild = "rebuild the image with a teeform whose `build vm-image` predicts NitroTPM PCR4 (pcr4_sha384)"
        return measurement_sets(
            target_name, [(k, m.measurements) for k, m in manifests], settings.attestation.pins,
            hints={"pcr4_sha384": rebuild, "pcr12_sha384": "rebuild the image with `teeform build vm-image`"},
        )


PLUGIN = NitroTpmPlugin()
