"""Target plug-in ``alicloud``/``tdx``: an Alibaba Cloud TDX instance booting a teeform image, its key in Trustee.

Settings (camelCase in YAML)::

    instanceType: ecs.g8i.xlarge        # ecs.g8i.<xlarge or larger> or ecs.gn8v-tee.<size>
    zone: cn-beijing-i                  # must offer the family (TDX_ZONES); region = the zone's region
    network: {cidr: 10.50.0.0/16, ingress: [{cidr: 10.0.0.0/8, port: 443}]}   # no ingress unless listed
    keyBroker:
      verifier: tdx                     # the Trustee verifier (default tdx)
      # either an existing KBS ...
      url: https://kbs.example.com:8080
      adminKeySecret: kbsAdminKey       # Pulumi secret config teeform:<name>, the Ed25519 admin key (PEM)
      caCertConfig: kbsCaCert           # optional: config key holding the KBS's CA certificate (PEM)
      # ... or a Trustee VM deployed by this target (admin key pair + TLS generated, kept secret)
      deploy: {instanceType: ecs.g7.large, adminCidr: 203.0.113.0/24}
      mrTd: [<96 hex>]                  # optional: Alibaba's TDVF MRTD, observed once (pins the platform)
      pins: [uki, rtmr_1, rtmr_2]       # optional: default = every value the manifests record
      tcbStatuses: [UpToDate]           # optional

Key gate (``gate``): a Trustee KBS releases ``resource/teeform/<target>/key`` only to TDX evidence
whose CCEL shows **our image** (the UKI's Authenticode SHA-384 loaded from ``EFI/BOOT/BOOTX64.EFI`` into
RTMR1, and ``rtmr_1``/``rtmr_2`` when the manifest records them), on **the platform** Intel signed
with an accepted TCB status, not a debug TD, and with an allowed MRTD when ``mrTd`` is set (without it
the firmware is not pinned). Sources: ``shared/reference/clouds.md`` §4.1, §4.3-§4.4;
:mod:`teeform.trustee`; docs/alicloud.md.

Instance families (clouds.md §4.1): ``ecs.g8i.*`` (xlarge or larger) needs
``SecurityOptions.ConfidentialComputingMode=TDX`` on ``RunInstances``, which pulumi-alicloud 4.0.0
cannot set, so the builder creates it through a dynamic provider; ``ecs.gn8v-tee.*`` is TDX by
default and is a plain ``alicloud.ecs.Instance``. Zones offering neither are refused here, at preview.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teeform.keyrelease import KeyReleasePolicy
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
    read_map,
    read_opt_str,
    read_str,
)
from teeform.targets.vm_key_broker import check_kbs_url, parse_trustee_options
from teeform.trustee.reference_values import TrusteeOptions, Verifier, reference_values

if TYPE_CHECKING:
    from teeform.manifest import Manifest

#: Family -> zones offering it as TDX. Source: Alibaba Cloud ECS docs "Build a TDX confidential computing
#: environment" (g8i: Beijing Zone I) and "Build a heterogeneous confidential computing environment"
#: (gn8v-tee: Beijing Zones F and L), as read in shared/reference/clouds.md §4.1. Extend when Alibaba
#: documents more zones (the DescribeAvailableResource API answers for an account).
TDX_ZONES: Mapping[str, frozenset[str]] = {
    "g8i": frozenset({"cn-beijing-i"}),
    "gn8v-tee": frozenset({"cn-beijing-f", "cn-beijing-l"}),
}
#: How each family is made a TDX guest.
TDX_MODE = {"g8i": "RunInstances SecurityOptions.ConfidentialComputingMode=TDX (dynamic provider)",
            "gn8v-tee": "TDX by default (plain alicloud.ecs.Instance)"}
_INSTANCE_TYPE = re.compile(r"^ecs\.(g8i|gn8v-tee)\.([0-9]*x?large)$")
#: g8i sizes below xlarge are not TDX-capable (clouds.md §4.1: "ecs.g8i.xlarge or larger").
_G8I_TOO_SMALL = {"large"}


@dataclass(frozen=True)
class DeployKbs:
    """A Trustee VM deployed next to the target: ``instance_type``, and ``admin_cidr`` (who may reach
    the KBS admin API from outside the VPC; never 0.0.0.0/0)."""

    instance_type: str = "ecs.g7.large"
    admin_cidr: str | None = None


@dataclass(frozen=True)
class KeyBrokerConfig:
    """``keyBroker``: the KBS (``url`` + secret admin key, or ``deploy``) and the appraisal options."""

    options: TrusteeOptions
    url: str | None = None
    admin_key_secret: str = "kbsAdminKey"
    ca_cert_config: str | None = None
    deploy: DeployKbs | None = None


@dataclass(frozen=True)
class AlicloudTdxSettings(TargetSettings):
    """Typed settings of an ``alicloud``/``tdx`` target."""

    instance_type: str
    zone: str
    family: str
    key_broker: KeyBrokerConfig
    cidr: str = "10.50.0.0/16"
    ingress: tuple[IngressRule, ...] = field(default_factory=tuple)

    @property
    def needs_tdx_flag(self) -> bool:
        """Whether the instance needs ``SecurityOptions.ConfidentialComputingMode=TDX`` (g8i)."""
        return self.family == "g8i"


def zone_region(zone: str) -> str:
    """``cn-beijing-i`` -> ``cn-beijing`` (Alibaba zone ids are the region id plus ``-<letter>``)."""
    return zone.rsplit("-", 1)[0]


def check_instance(instance_type: str, zone: str, region: str, source: str, fld: str) -> str:
    """The family of ``instance_type`` after checking that ``zone`` (in ``region``) offers it as TDX.

    Raises:
        TeeformError: not a TDX family, a g8i below xlarge, a zone outside :data:`TDX_ZONES`, or a zone
            outside the target's region.
    """
    m = _INSTANCE_TYPE.match(instance_type)
    if not m:
        raise fail(f"{instance_type!r} is not an Alibaba TDX instance type (ecs.g8i.<xlarge+> or ecs.gn8v-tee.<size>)",
                   source, f"{fld}.instanceType")
    family, size = m.groups()
    if family == "g8i" and size in _G8I_TOO_SMALL:
        raise fail("TDX needs ecs.g8i.xlarge or larger", source, f"{fld}.instanceType")
    if zone not in TDX_ZONES[family]:
        raise fail(f"zone {zone!r} does not offer {family} TDX instances (documented: {sorted(TDX_ZONES[family])})",
                   source, f"{fld}.zone", hint="docs/alicloud.md lists the zones and their source")
    if zone_region(zone) != region:
        raise fail(f"zone {zone!r} is not in region {region!r}", source, f"{fld}.zone")
    return family


def parse_key_broker(raw: Any, source: str, fld: str, *, allow_deploy: bool = True) -> KeyBrokerConfig:
    """Parse a ``keyBroker`` mapping (shared by every target that attaches a Trustee key broker).

    Raises:
        TeeformError: naming ``source`` and the field.
    """
    keys = {"verifier", "url", "adminKeySecret", "caCertConfig", "deploy", "mrTd", "pins", "tcbStatuses"}
    kb = read_map(raw, source, fld, keys)
    if not kb:
        raise fail("a key broker is required (url + adminKeySecret, or deploy)", source, fld)
    options = parse_trustee_options(kb, source, fld, Verifier.TDX)
    url = read_opt_str(kb.get("url"), source, f"{fld}.url")
    deploy = None
    if kb.get("deploy") is not None:
        if not allow_deploy:
            raise fail("this target cannot deploy a Trustee VM; give url + adminKeySecret", source, f"{fld}.deploy")
        d = read_map(kb["deploy"], source, f"{fld}.deploy", {"instanceType", "adminCidr"})
        admin = read_cidr(d["adminCidr"], source, f"{fld}.deploy.adminCidr") if d.get("adminCidr") is not None else None
        if admin is not None and ipaddress.ip_network(admin, strict=False).prefixlen == 0:
            raise fail("the KBS admin API must not be open to every address", source, f"{fld}.deploy.adminCidr")
        deploy = DeployKbs(read_opt_str(d.get("instanceType"), source, f"{fld}.deploy.instanceType") or "ecs.g7.large",
                           admin)
    if (url is None) == (deploy is None):
        raise fail("give exactly one of url (an existing KBS) and deploy (a Trustee VM)", source, fld)
    if url is not None:
        check_kbs_url(url, source, f"{fld}.url")  # the URL is kept as written (it is an output)
    return KeyBrokerConfig(options, url,
                           read_opt_str(kb.get("adminKeySecret"), source, f"{fld}.adminKeySecret") or "kbsAdminKey",
                           read_opt_str(kb.get("caCertConfig"), source, f"{fld}.caCertConfig"), deploy)


class Plugin(TargetPlugin):
    """``alicloud``/``tdx``."""

    cloud = Cloud.ALICLOUD
    tee = TeeType.TDX
    manifest_kinds = frozenset({"vm-image"})
    settings_keys = frozenset({"instanceType", "zone", "network", "keyBroker"})
    builder = "components.alicloud.tdx:build"
    outputs = (
        OutputSpec("instance_id", "the ECS instance id of the TDX guest"),
        OutputSpec("image_id", "the imported custom image id (UEFI, NVMe)"),
        OutputSpec("kbs_url", "the Trustee KBS holding the target's key"),
        OutputSpec("reference_value_ids", "the RVPS reference-value ids registered for the allowed manifests"),
        OutputSpec("key_resource", "the KBS resource path of the target's key (resource/teeform/<target>/key)"),
    )
    gate = ("Trustee KBS: our image (UKI Authenticode SHA-384 in the RTMR1 event log, RTMR1/RTMR2 when recorded) "
            "on the platform (Intel-signed quote, accepted TCB status, non-debug TD, MRTD only when configured)")

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> AlicloudTdxSettings:
        """Parse and check instance type, zone, network and key broker.

        Raises:
            TeeformError: naming ``source`` and the field under ``fld``.
        """
        itype = read_str(raw.get("instanceType"), source, f"{fld}.instanceType")
        zone = read_str(raw.get("zone"), source, f"{fld}.zone")
        region = read_str(raw.get("region"), source, f"{fld}.region") if raw.get("region") is not None else zone_region(zone)
        family = check_instance(itype, zone, region, source, fld)
        n = read_map(raw.get("network"), source, f"{fld}.network", {"cidr", "ingress"})
        rules = read_ingress(n.get("ingress"), source, f"{fld}.network.ingress")
        kb = parse_key_broker(raw.get("keyBroker"), source, f"{fld}.keyBroker")
        if kb.options.verifier is not Verifier.TDX:
            raise fail("Alibaba TDX guests are appraised by the tdx verifier", source, f"{fld}.keyBroker.verifier")
        return AlicloudTdxSettings(itype, zone, family, kb, read_cidr(n["cidr"], source, f"{fld}.network.cidr")
                                   if n.get("cidr") is not None else "10.50.0.0/16", rules)

    def key_release(self, target_name: str, settings: TargetSettings,
                    manifests: Sequence[tuple[str, Manifest]]) -> KeyReleasePolicy | None:
        """The Trustee sets (teeform measurement names) of the allowed manifests."""
        assert isinstance(settings, AlicloudTdxSettings)
        return reference_values(target_name, [(k, m.measurements) for k, m in manifests],
                                settings.key_broker.options).key_release()


PLUGIN = Plugin()

__all__ = ["PLUGIN", "Plugin", "AlicloudTdxSettings", "KeyBrokerConfig", "DeployKbs", "IngressRule", "TDX_ZONES",
           "TDX_MODE", "check_instance", "parse_key_broker", "zone_region"]
