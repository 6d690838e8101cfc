"""Target plug-ins, one per supported (cloud, TEE type) pair, imported lazily.

:data:`PLUGINS` names each pair's plug-in as ``"module:attribute"``; :func:`plugin_for` imports only
the module of the pair asked for, so a stack that deploys only to AWS never imports an Azure module
(and a plug-in imports its cloud's Pulumi SDK only inside its builder, ``components/...``). The API a
plug-in implements is :class:`teeform.targets.base.TargetPlugin`.

Today ``aws``/``nitro-enclave`` creates resources; the ``vm-image`` pairs are explicit
measurements-only plug-ins (:mod:`teeform.targets.measurements_only`). A new pair is one module here
and one line in :data:`PLUGINS`.

Since issue 8 ``aws``/``nitro-tpm`` and ``aws``/``sev-snp`` create resources too (a VM from the
image's raw disk, a KMS key gated on its NitroTPM PCRs: :mod:`teeform.targets.aws_nitro_tpm`).

Since issue 10 ``azure``/``sev-snp`` and ``azure``/``tdx`` create resources (a confidential VM from the
image's VHD, a Key Vault key released by SKR, which pins the platform, not the image:
:mod:`teeform.targets.azure_cvm`).
"""

from __future__ import annotations

import importlib

from teeform.errors import TeeformError
from teeform.targets.base import Cloud, TargetPlugin, TargetSettings, TeeType

#: (cloud, TEE type) -> ``"module:attribute"`` of its :class:`TargetPlugin` instance.
PLUGINS: dict[tuple[Cloud, TeeType], str] = {
    (Cloud.AWS, TeeType.NITRO_ENCLAVE): "teeform.targets.aws_nitro_enclave:PLUGIN",
    (Cloud.AWS, TeeType.SEV_SNP): "teeform.targets.aws_sev_snp:PLUGIN",
    (Cloud.AWS, TeeType.NITRO_TPM): "teeform.targets.aws_nitro_tpm:PLUGIN",
    (Cloud.AZURE, TeeType.SEV_SNP): "teeform.targets.azure_sev_snp:PLUGIN",
    (Cloud.AZURE, TeeType.TDX): "teeform.targets.azure_tdx:PLUGIN",
    (Cloud.GCP, TeeType.SEV_SNP): "teeform.targets.gcp_sev_snp:PLUGIN",
    (Cloud.GCP, TeeType.TDX): "teeform.targets.gcp_tdx:PLUGIN",
    (Cloud.GCP, TeeType.CONFIDENTIAL_SPACE): "teeform.targets.gcp_confidential_space:PLUGIN",
    (Cloud.ALICLOUD, TeeType.TDX): "teeform.targets.alicloud_tdx:PLUGIN",
}

#: Which TEE types each cloud can host (derived from :data:`PLUGINS`).
SUPPORTED: dict[Cloud, frozenset[TeeType]] = {
    c: frozenset(t for (cc, t) in PLUGINS if cc is c) for c in Cloud
}


def plugin_for(cloud: Cloud, tee: TeeType) -> TargetPlugin:
    """The plug-in of (``cloud``, ``tee``), importing its module on first use.

    Raises:
        TeeformError: the pair is not supported.
    """
    ref = PLUGINS.get((cloud, tee))
    if ref is None:
        raise TeeformError(f"{cloud.value} does not offer {tee.value}")
    module, attr = ref.split(":")
    plugin = getattr(importlib.import_module(module), attr)
    if not isinstance(plugin, TargetPlugin) or (plugin.cloud, plugin.tee) != (cloud, tee):
        raise TypeError(f"{ref} is not the plug-in of {cloud.value}/{tee.value}")
    return plugin


__all__ = ["PLUGINS", "SUPPORTED", "Cloud", "TeeType", "TargetPlugin", "TargetSettings", "plugin_for"]
