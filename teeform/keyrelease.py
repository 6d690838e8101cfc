"""The cloud-neutral key-release model: which measurement sets a target's key may be released to.

One allowed manifest is one :class:`MeasurementSet`: the measurements the gate pins, **all required
together** (tuple semantics, as ``teeform verify attestation`` checks a document against one
manifest). A :class:`KeyReleasePolicy` is the list of a target's sets; an attestation is admitted
when it matches at least one set completely. Values from different builds are never combined: with
manifests A and B the policy admits (A.PCR0, A.PCR1) and (B.PCR0, B.PCR1), not (A.PCR0, B.PCR1).

Each cloud renders the policy in its own grammar. AWS KMS (``components/aws/attested_key.py``)
writes one key-policy statement per set, each with ``StringEqualsIgnoreCase`` on every pinned
``kms:RecipientAttestation:<name>`` key (IAM ANDs the keys of one statement and ORs statements;
IAM JSON policy reference, "Condition" and "Evaluation logic"; AWS KMS developer guide
"conditions-nitro-enclave"). The same sets, rendered the same way, gate ``kms:GenerateRandom`` in the
host role's IAM policy (``Resource: "*"``; GenerateRandom uses no key, so a key policy cannot grant
it), and a private network adds ``aws:SourceVpce`` to every statement (docs/aws-deploy.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from teeform.errors import TeeformError
from teeform.measurements import BY_NAME

_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class MeasurementSet:
    """The measurements of one allowed manifest that a gate pins, all required together.

    Attributes:
        manifest_key: the manifest's export key (``name`` or ``name@version``).
        values: measurement name -> lowercase hex, in pin order.
    """

    manifest_key: str
    values: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def matches(self, observed: Mapping[str, str]) -> bool:
        """Whether ``observed`` (name -> hex, any case) equals every value of this set."""
        return all(str(observed.get(k, "")).lower() == v for k, v in self.values.items())


@dataclass(frozen=True)
class KeyReleasePolicy:
    """The measurement sets the key of ``target`` may be released to (first = deployed manifest)."""

    target: str
    sets: tuple[MeasurementSet, ...]

    def allows(self, observed: Mapping[str, str]) -> bool:
        """Whether some set matches ``observed`` completely."""
        return any(s.matches(observed) for s in self.sets)

    @property
    def names(self) -> tuple[str, ...]:
        """The pinned measurement names, in pin order (the same for every set)."""
        return tuple(self.sets[0].values) if self.sets else ()


def measurement_sets(target: str, manifests: Sequence[tuple[str, Mapping[str, str]]], pins: Sequence[str],
                     *, field_name: str = "attestation.pcrs", hints: Mapping[str, str] | None = None) -> KeyReleasePolicy:
    """Build the policy of ``target`` pinning ``pins`` of each manifest.

    Args:
        target: the target name.
        manifests: ``(manifest key, measurements)`` per allowed manifest.
        pins: measurement names to pin (from :data:`teeform.measurements.MEASUREMENTS`).
        field_name: the config field that chose ``pins`` (for error messages).
        hints: optional fix per measurement name (e.g. PCR8 on an unsigned EIF).

    Raises:
        TeeformError: no manifests, an unknown name, or a manifest lacking a pinned measurement or
            holding one of the wrong length.
    """
    if not manifests:
        raise TeeformError(f"target {target!r}: a key needs at least one allowed manifest")
    sets: list[MeasurementSet] = []
    for key, meas in manifests:
        values: dict[str, str] = {}
        for name in pins:
            spec = BY_NAME.get(name)
            if spec is None:
                raise TeeformError(f"unknown measurement {name!r}", field=field_name)
            v = meas.get(name)
            if v is None:
                raise TeeformError(f"manifest {key!r} has no {name} measurement to pin", field=field_name,
                                   hint=(hints or {}).get(name))
            v = v.lower()
            if len(v) != spec.hex_len or not _HEX.match(v):
                raise TeeformError(f"manifest {key!r}: {name} must be {spec.hex_len} hex digits, got {v!r}")
            values[name] = v
        s = MeasurementSet(key, values)
        if all(dict(x.values) != dict(s.values) for x in sets):
            sets.append(s)
    return KeyReleasePolicy(target, tuple(sets))


__all__ = ["MeasurementSet", "KeyReleasePolicy", "measurement_sets"]
