"""``manifest-signed``: in production, every measurement manifest the stack loads was verified against a
trusted signing key.

The Pulumi program verifies each manifest's signature against the stack's ``teeform:trustedManifestKeys``
before any of its measurements reaches a key policy (components/measurement_manifest.py,
teeform/signing.py: in-toto Statements in DSSE, or a cosign ``sign-blob`` signature) and refuses the
stack when one does not verify. It records the result on each ``teeform:index:MeasurementManifest`` as
``signed`` (bool) and ``signer`` (``sha256:<hex SHA-256 of the key's DER SubjectPublicKeyInfo>``). This
policy reads those props: a manifest without ``signed: true`` and a well-formed ``signer`` is a
violation **in production** (policy config ``environment``, else stack config ``teeform:environment``,
against ``productionEnvironments``), or everywhere with ``requireSigned: true``. So a production
stack that pins no key at all (nothing verified) fails, and with the pack config ``trustedSigners``
(a list of ``sha256:<hex>``) the pack pins the keys itself, independently of the stack file.

What it does not do: verify signatures (the pack depends only on ``pulumi_policy``; the program
does that, and a manifest that fails verification never gets this far).
"""

from __future__ import annotations

import re

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

from teeform_policies import tokens
from teeform_policies.common import ReportViolation, cfg, environment, is_production, label

#: ``signer`` as the program records it (teeform/signing.py ``TrustedKey.signer``).
SIGNER = re.compile(r"^sha256:[0-9a-f]{64}$")


def validate_manifest_signed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`MANIFEST_SIGNED`."""
    if args.resource_type != tokens.TEEFORM_MEASUREMENT_MANIFEST:
        return
    if not (is_production(args) or cfg(args, "requireSigned", False) is True):
        return
    where = label(args.resource_type, args.name)
    path = args.props.get("path") or args.name
    signer = args.props.get("signer")
    env = environment(args) or "(requireSigned)"
    if args.props.get("signed") is not True or not isinstance(signer, str) or not SIGNER.match(signer):
        report(f"{where}: manifest {path} was not verified against a trusted signing key (signed: "
               f"{args.props.get('signed')!r}) in environment {env!r}. Sign it (teeform sign MANIFEST --key KEY.pem) "
               "and pin the public key in the stack's teeform:trustedManifestKeys (docs/signing.md).")
        return
    trusted = [str(s).lower() for s in cfg(args, "trustedSigners", []) or []]
    if trusted and signer not in trusted:
        report(f"{where}: manifest {path} is signed by {signer}, which is not in this policy's trustedSigners "
               f"({len(trusted)} pinned). Sign it with a pinned key, or add the key's fingerprint to trustedSigners.")


MANIFEST_SIGNED = ResourceValidationPolicy(
    name="manifest-signed",
    description=(
        "Checks that in production (policy config 'environment', else stack config teeform:environment; or "
        "everywhere with requireSigned) every teeform:index:MeasurementManifest was verified by the program against "
        "a key of teeform:trustedManifestKeys (props signed/signer), and, with trustedSigners, that its signer is "
        "one of those key fingerprints."
    ),
    validate=validate_manifest_signed,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={
            "environment": {"type": "string", "default": ""},
            "productionEnvironments": {"type": "array", "items": {"type": "string"}, "default": ["prod", "production"]},
            "requireSigned": {"type": "boolean", "default": False},
            "trustedSigners": {"type": "array", "items": {"type": "string"}, "default": []},
        }
    ),
    remediation_steps=(
        "teeform sign <manifest> --key <release.key>; list the public key (PEM file or inline) in "
        "teeform:trustedManifestKeys of the production stack."
    ),
    url="https://github.com/secure-systems-lab/dsse/blob/master/protocol.md",
)

POLICIES = (MANIFEST_SIGNED,)

__all__ = ["POLICIES", "MANIFEST_SIGNED"]
