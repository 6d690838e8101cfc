"""Readers of the key-release gates in ``teeform preview --json`` resources: what each one admits, parsed.

``teeform preview diff`` (:mod:`teeform.preview_diff`) compares key release **as allowed sets**, never
as JSON strings. This module turns one resource (its type token and wire-name ``inputs``) into a
:class:`Gate`: the measurement (or claim) sets it admits, the conditions that hold for every set
(``terms``), and what the gate pins (``pins``: ``image`` = values teeform predicts from our build,
``platform`` = claims about the cloud's TEE only). Pure: no I/O, no Pulumi import.

Readers, by resource type (:data:`READERS`):

* **AWS IAM / KMS policy documents** (``aws:kms/key:Key``, ``aws:kms/keyPolicy:KeyPolicy``,
  ``aws:iam/rolePolicy:RolePolicy``, ``aws:iam/policy:Policy``; input ``policy``): IAM semantics (IAM JSON
  policy reference "Condition" and "Evaluation logic"): the condition keys of one ``Allow`` statement are
  ANDed, the values of one key ORed (so a statement admits the cross product), statements ORed.
  ``kms:RecipientAttestation:<name>`` keys (any ``String*`` operator) are the pins: Nitro Enclaves
  ``PCR0``.. / ``ImageSha384`` keep their names (the manifest's names); NitroTPM
  ``NitroTPMPCR<n>`` keys are renamed to the manifest measurement they pin (``NitroTPMPCR4`` ->
  ``pcr4_sha384``, :data:`teeform.targets.aws_nitro_tpm.NITROTPM_PCR_MEASUREMENTS`; AWS KMS developer
  guide "conditions-nitro-tpm", ``shared/reference/clouds.md`` §1.1). Pins: our image.
* **GCP Workload Identity Federation provider**
  (``gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider``; input ``attributeCondition``):
  the CEL condition is parsed with cel-python (``celpy.CELParser``, the cel-spec ``langdef.md`` grammar);
  it must be a conjunction (no ``||``, ``?:``); the conjunct
  ``assertion.submods.container.image_digest in [...]`` (or ``== '...'``) gives one set
  ``{image_digest: <hex>}`` per listed ``sha256:<hex>`` digest (bare hex, as the manifest records it), its
  literals evaluated by cel-python's own evaluator (several such conjuncts: the digests in all of them);
  every other conjunct (``swname``, ``dbgstat``, ``support_attributes``, the service account) is a
  ``term`` (claim names: Confidential Space token claims, clouds.md §3.1). Pins: our container image.
* **GCP KMS grants** (``gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember`` with role
  ``roles/cloudkms.cryptoKeyDecrypter``): each member ``principalSet://.../attribute.image_digest/<digest>``
  (IAM "Principal identifiers") is the set ``{image_digest: <hex>}``; the members of one key and role
  are one gate (``group``), since each grant is its own resource. Another decrypter member is the set
  ``{member: ...}`` (it pins an identity, not an image). Encrypter grants release nothing.
* **Azure Key Vault keys** (``azure-native:keyvault:Key``; input ``properties.releasePolicy.data``): the
  secure-key-release policy, base64url JSON (:func:`teeform.azure_release.decode_policy`; grammar
  https://learn.microsoft.com/azure/key-vault/keys/policy-grammar, clouds.md §2.4): ``anyOf`` ORs,
  ``allOf`` ANDs, each leaf ``{claim, equals}``; an ``authority`` applies to its branch. Each branch of
  the disjunctive normal form is a set ``{authority: ..., <claim>: <value>, ...}``. Pins: the platform
  only (the MAA token carries no image digest; :data:`teeform.azure_release.GATE_PINS`).
* **Azure release role** (``azure-native:authorization:RoleAssignment`` of the built-in role "Key Vault
  Crypto Service Release User", :data:`AZURE_RELEASE_ROLE_ID`): the set ``{principal: <principalId>}``; the
  assignments on one key scope are one gate. Pins: an identity (the VM's), not an image.
* **Trustee KBS registrations** (``pulumi-python:dynamic/trustee:KbsRegistration``; input
  ``rvps_message``): the RVPS ``sample`` message's ``payload`` (standard base64 of ``{id: [values]}``,
  :mod:`teeform.trustee.reference_values`) is decoded; ids ``teeform.<target>.<set id>.<claim>`` are
  grouped by set id into one set per allowed manifest, claims renamed to the manifest measurement they
  pin through :data:`teeform.trustee.reference_values.CLAIMS` of the ``verifier`` input (``uki`` ->
  ``uki_authenticode_sha384``, ``pcr11`` -> ``pcr11_sha256``); an id registered with ``[]`` (a
  tombstone) admits nothing; ``teeform.<target>.mr_td`` values are terms (the platform's firmware).
  Pins: our image (and the firmware when MRTDs are listed).

A resource these readers cannot read (a CEL condition with ``||``, a release policy that does not
decode) gives a :class:`Gate` with ``error`` set and no sets, so the diff says it could not read it
instead of claiming nothing changed.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from teeform.azure_release import GATE_PINS as AZURE_GATE_PINS
from teeform.azure_release import decode_policy
from teeform.errors import TeeformError
from teeform.safeload import loads_json
from teeform.targets.aws_nitro_tpm import NITROTPM_PCR_MEASUREMENTS
from teeform.trustee.reference_values import CLAIMS as TRUSTEE_CLAIMS
from teeform.trustee.reference_values import Verifier

#: IAM condition key prefix of Nitro attestation measurements (AWS KMS developer guide,
#: "conditions-nitro-enclave" and "conditions-nitro-tpm"; components/aws/attested_key.py)
AWS_ATTESTATION_PREFIX = "kms:RecipientAttestation:"
#: NitroTPM condition-key names (after the prefix) -> the manifest measurement they pin
NITROTPM_KEYS: Mapping[str, str] = {f"NitroTPM{p}": m for p, m in NITROTPM_PCR_MEASUREMENTS.items()}

AWS_POLICY_TYPES = ("aws:kms/key:Key", "aws:kms/keyPolicy:KeyPolicy", "aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
GCP_PROVIDER_TYPE = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
GCP_KMS_MEMBER_TYPE = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
AZURE_KEY_TYPE = "azure-native:keyvault:Key"
AZURE_ROLE_ASSIGNMENT_TYPE = "azure-native:authorization:RoleAssignment"
TRUSTEE_TYPE = "pulumi-python:dynamic/trustee:KbsRegistration"

#: The Confidential Space token claim of the container image digest (clouds.md §3.1; components/gcp/cel.py)
GCP_DIGEST_CLAIM = "assertion.submods.container.image_digest"
#: The Cloud KMS role that can decrypt (IAM "Cloud KMS roles")
GCP_DECRYPTER = "roles/cloudkms.cryptoKeyDecrypter"
_PRINCIPAL_SET_DIGEST = re.compile(r"^principalSet://iam\.googleapis\.com/projects/[^/]+/locations/global/"
                                   r"workloadIdentityPools/[^/]+/attribute\.image_digest/(sha256:[0-9a-f]{64})$")
#: The sentences shown next to each gate: what it pins (the platform, or our image)
PINS_TEXT: Mapping[str, str] = {
    "image": "pins our image",
    "platform": "pins the platform, not the image",
    "identity": "pins an identity, not an image",
}


@dataclass(frozen=True)
class GateSet:
    """One allowed set: ``values`` = sorted ``(name, value)`` pairs (lower-case hex measurements, digests
    ``sha256:<hex>``, or Azure claim values as written), all required together; ``actions`` it gates
    (AWS only; empty elsewhere); ``sid`` = where in the resource it was read (statement Sid, set id)."""

    values: tuple[tuple[str, str], ...]
    actions: tuple[str, ...] = ()
    sid: str = ""


@dataclass(frozen=True)
class Gate:
    """What one key-release resource admits (see the module docstring).

    Attributes:
        kind: ``aws-iam``, ``gcp-wif-condition``, ``gcp-kms-grant``, ``azure-skr``, ``azure-release-role`` or
            ``trustee-rvps``.
        pins: ``image``, ``platform`` or ``identity`` (:data:`PINS_TEXT`).
        sets: the allowed sets (OR of sets; each set an AND of its values).
        terms: conditions that hold for every set (CEL conjuncts other than the digest, Trustee MRTDs).
        group: resources with the same non-empty group form one gate (GCP grants of one key and role).
        error: why the resource could not be read (then ``sets`` is empty).
    """

    kind: str
    pins: str
    sets: tuple[GateSet, ...]
    terms: tuple[str, ...] = ()
    group: str = ""
    error: str = ""

    @property
    def pins_text(self) -> str:
        """:data:`PINS_TEXT` of :attr:`pins`."""
        return PINS_TEXT.get(self.pins, self.pins)


def _key(values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


# ------------------------------------------------------------------------------------------ AWS
#: most release sets one key's statements may allow together (their condition values multiply:
#: 12 keys of 40 values each would be 10^19 sets); beyond it the key is refused, never enumerated
MAX_RELEASE_SETS = 4096


def aws_statement_sets(doc: Any) -> list[tuple[str, dict[str, str], tuple[str, ...]]]:
    """``[(sid, {name: value}, actions)]`` of an IAM/KMS policy document (IAM semantics, module docstring).

    Values are lower-cased (the statements use ``StringEqualsIgnoreCase``); NitroTPM names are renamed
    to the manifest measurement (:data:`NITROTPM_KEYS`). Statements that are not ``Allow`` or carry no
    attestation key release nothing and are skipped; so are parts of a statement that are not shaped as
    IAM documents them (a ``Condition`` that is not an object, an ``Action`` that is neither a string nor
    a list: IAM would refuse such a policy).

    Raises:
        TeeformError: the statements allow more than :data:`MAX_RELEASE_SETS` sets together (counted
            before they are enumerated), naming ``Statement[i].Condition``.
    """
    if not isinstance(doc, Mapping):
        return []
    stmts = doc.get("Statement")
    if isinstance(stmts, Mapping):
        stmts = [stmts]
    out: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
    total = 0
    for i, st in enumerate(stmts if isinstance(stmts, list) else []):
        if not isinstance(st, Mapping) or st.get("Effect") != "Allow":
            continue
        pins: dict[str, list[str]] = {}
        condition = st.get("Condition")
        for op, conds in (condition.items() if isinstance(condition, Mapping) else ()):
            if not str(op).startswith("String") or not isinstance(conds, Mapping):
                continue
            for k, vals in conds.items():
                if str(k).startswith(AWS_ATTESTATION_PREFIX):
                    name = str(k)[len(AWS_ATTESTATION_PREFIX):]
                    vs = vals if isinstance(vals, list) else [vals]
                    pins[NITROTPM_KEYS.get(name, name)] = [str(x).lower() for x in vs]
        if not pins:
            continue
        count = 1
        for vs in pins.values():
            count *= len(vs)
        total += count
        if total > MAX_RELEASE_SETS:
            raise TeeformError(f"the policy allows more than {MAX_RELEASE_SETS} measurement sets (the values of its "
                               "attestation condition keys multiply); not compared", field=f"Statement[{i}].Condition")
        actions = st.get("Action")
        acts = tuple(sorted([actions] if isinstance(actions, str) else
                            [str(a) for a in actions] if isinstance(actions, list) else []))
        names = list(pins)
        for combo in itertools.product(*(pins[n] for n in names)):
            out.append((str(st.get("Sid", "")), dict(zip(names, combo, strict=True)), acts))
    return out


def _json_input(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return loads_json(v, source="<string>")  # bounded: depth, numbers, duplicate keys
        except TeeformError:
            return None
    return v


def read_aws_policy(inputs: Mapping[str, Any]) -> Gate:
    """The sets of the ``policy`` input (a JSON string or object), see :func:`aws_statement_sets`."""
    doc = _json_input(inputs.get("policy"))
    sets = tuple(GateSet(_key(v), a, sid) for sid, v, a in aws_statement_sets(doc))
    return Gate("aws-iam", "image", sets)


# ------------------------------------------------------------------------------------------ GCP
def _tree_text(expr: str, node: Any) -> str:
    meta = node.meta
    return expr[meta.start_pos:meta.end_pos].strip() if not meta.empty else str(node)


def _dotted(node: Any) -> str | None:
    """``a.b.c`` when ``node`` (a subtree of cel-python's parse tree: ``data`` names the grammar rule, leaves are
    tokens with a ``type``) is a plain member path, else None."""
    if not hasattr(node, "iter_subtrees"):
        return None
    idents = list(node.scan_values(lambda v: hasattr(v, "type")))
    if {t.type for t in idents} != {"IDENT"}:
        return None
    rules = {t.data for t in node.iter_subtrees()}
    if not rules <= {"relation", "addition", "multiplication", "unary", "member", "member_dot", "primary", "ident"}:
        return None
    return ".".join(str(t) for t in idents)


def _cel_value(expr_text: str) -> Any:
    """Evaluate a CEL literal with cel-python's own evaluator (escapes, raw and triple-quoted strings as
    the cel-spec defines them); None when it is not a constant expression."""
    import celpy

    env = celpy.Environment()
    try:
        return env.program(env.compile(expr_text)).evaluate({})
    except Exception:  # noqa: BLE001 - cel-python raises its own error types for a non-constant
        return None


def cel_conjuncts(expr: str) -> list[Any] | None:
    """The top-level ``&&`` operands of ``expr`` as cel-python (lark) subtrees, or None when the expression
    is not a plain conjunction (a top-level ``||`` or ``?:``) or does not parse.

    Raises nothing: a CEL syntax error is reported as None."""
    import celpy

    try:
        tree = celpy.CELParser().parse(expr)
    except Exception:  # noqa: BLE001 - celpy.CELParseError and lark errors
        return None
    if tree.data != "expr" or len(tree.children) != 1:
        return None  # a ternary ?: at the top
    orr = tree.children[0]
    if orr.data != "conditionalor" or len(orr.children) != 1:
        return None
    out: list[Any] = []

    def walk(n: Any) -> None:
        if getattr(n, "data", None) == "conditionaland":
            for c in n.children:
                walk(c)
        else:
            out.append(n)

    walk(orr.children[0])
    return out


def cel_digest_clause(expr: str, node: Any) -> list[str] | None:
    """The digests of a conjunct ``<GCP_DIGEST_CLAIM> in [<string literals>]`` or ``== '<literal>'``
    (either side of ``==``), else None. ``node`` is one of :func:`cel_conjuncts`' subtrees of ``expr``."""
    # cel-python's grammar: relation -> [relation_in | relation_eq (holding the left operand), right operand]
    if getattr(node, "data", None) != "relation" or len(node.children) != 2:
        return None
    opnode, right = node.children
    op = getattr(opnode, "data", None)
    if op not in ("relation_in", "relation_eq") or len(opnode.children) != 1:
        return None
    left = opnode.children[0]
    sides = [(left, right)] if op == "relation_in" else [(left, right), (right, left)]
    for claim, lit in sides:
        if _dotted(claim) != GCP_DIGEST_CLAIM:
            continue
        value = _cel_value(_tree_text(expr, lit))
        if op == "relation_in" and isinstance(value, list) and all(isinstance(x, str) for x in value):
            return [str(x) for x in value]
        if op == "relation_eq" and isinstance(value, str):
            return [str(value)]
    return None


def read_gcp_provider(inputs: Mapping[str, Any]) -> Gate:
    """The sets of a Workload Identity Federation provider's ``attributeCondition`` (module docstring)."""
    expr = inputs.get("attributeCondition")
    if not isinstance(expr, str) or not expr.strip():
        return Gate("gcp-wif-condition", "image", (), error="no attributeCondition: every token of the issuer is admitted")
    clauses = cel_conjuncts(expr)
    if clauses is None:
        return Gate("gcp-wif-condition", "image", (),
                    error="attributeCondition is not a plain CEL conjunction (||, ?: or a syntax error); not read")
    digests: list[str] | None = None
    terms: list[str] = []
    for c in clauses:
        d = cel_digest_clause(expr, c)
        if d is None:
            terms.append(_tree_text(expr, c))
        else:  # several digest clauses: all must hold, so only digests in every one are admitted (CEL == is exact)
            digests = list(dict.fromkeys(d)) if digests is None else [x for x in digests if x in d]
    if digests is None:
        return Gate("gcp-wif-condition", "image", (), tuple(terms),
                    error=f"attributeCondition has no {GCP_DIGEST_CLAIM} clause: no image is pinned")
    return Gate("gcp-wif-condition", "image", tuple(GateSet((("image_digest", _bare(d)),)) for d in digests), tuple(terms))


def _bare(digest: str) -> str:
    """``sha256:<hex>`` -> ``<hex>``: the manifest records ``image_digest`` as bare hex (``teeform build oci``)."""
    return digest[len("sha256:"):] if digest.startswith("sha256:") else digest


def read_gcp_kms_member(inputs: Mapping[str, Any]) -> Gate | None:
    """A ``cryptoKeyDecrypter`` grant: ``{image_digest}`` of its principal set (or ``{member}``); None for
    other roles. Grants of one key and role share a ``group``."""
    role = inputs.get("role")
    if role != GCP_DECRYPTER:
        return None
    member = str(inputs.get("member", ""))
    group = f"{GCP_KMS_MEMBER_TYPE} {role} on {inputs.get('cryptoKeyId')}"
    m = _PRINCIPAL_SET_DIGEST.match(member)
    if m:
        return Gate("gcp-kms-grant", "image", (GateSet((("image_digest", _bare(m.group(1))),)),), group=group)
    return Gate("gcp-kms-grant", "identity", (GateSet((("member", member),)),), group=group)


# ---------------------------------------------------------------------------------------- Azure
def _skr_count(node: Any) -> int:
    """How many branches :func:`_skr_branches` would return for ``node`` (anyOf adds, allOf multiplies),
    counted without building them and capped at ``MAX_RELEASE_SETS + 1``; malformed nodes count 1
    (:func:`_skr_branches` reports them)."""
    if not isinstance(node, Mapping) or "claim" in node:
        return 1
    if "anyOf" in node:
        kids = node["anyOf"] if isinstance(node["anyOf"], list) else []
        return min(MAX_RELEASE_SETS + 1, sum(_skr_count(c) for c in kids))
    if "allOf" in node:
        n = 1
        for c in node["allOf"] if isinstance(node["allOf"], list) else []:
            n = min(MAX_RELEASE_SETS + 1, n * _skr_count(c))
        return n
    return 1


def _skr_branches(node: Any, authority: str | None, where: str) -> list[dict[str, str]]:
    """The disjunctive normal form of one SKR policy node: a list of ``{name: value}`` conjunctions."""
    if not isinstance(node, Mapping):
        raise TeeformError("is not a JSON object", field=where)
    auth = node.get("authority", authority)
    base: dict[str, str] = {"authority": str(auth)} if auth is not None else {}
    if "claim" in node:
        if "equals" not in node:
            raise TeeformError(f"claim {node.get('claim')!r} has no 'equals' (the only operator Key Vault implements)",
                               field=where)
        return [{**base, str(node["claim"]): str(node["equals"]).lower() if isinstance(node["equals"], bool)
                 else str(node["equals"])}]
    if "anyOf" in node:
        out: list[dict[str, str]] = []
        for i, c in enumerate(node["anyOf"] if isinstance(node["anyOf"], list) else []):
            out += _skr_branches(c, auth, f"{where}.anyOf[{i}]")
        return out
    if "allOf" in node:
        acc: list[dict[str, str]] = [dict(base)]
        for i, c in enumerate(node["allOf"] if isinstance(node["allOf"], list) else []):
            acc = [{**a, **b} for a in acc for b in _skr_branches(c, auth, f"{where}.allOf[{i}]")]
        return acc
    raise TeeformError("has neither claim, anyOf nor allOf", field=where)


def read_azure_key(inputs: Mapping[str, Any]) -> Gate | None:
    """The sets of a Key Vault key's secure-key-release policy; None for a key without one."""
    rp = ((inputs.get("properties") or {}).get("releasePolicy") or {}) if isinstance(inputs.get("properties"), Mapping) else {}
    data = rp.get("data") if isinstance(rp, Mapping) else None
    if data is None:
        return None
    try:
        doc = decode_policy(data, field="properties.releasePolicy.data")
        root = {"anyOf": doc.get("anyOf", [])}
        if _skr_count(root) > MAX_RELEASE_SETS:
            raise TeeformError(f"allows more than {MAX_RELEASE_SETS} claim sets (allOf of anyOf multiplies them)",
                               field="releasePolicy")
        branches = _skr_branches(root, None, "releasePolicy")
    except TeeformError as exc:
        where = f"{exc.field}: " if exc.field else ""
        return Gate("azure-skr", "platform", (), error=f"release policy not read: {where}{exc.message}")
    return Gate("azure-skr", "platform", tuple(GateSet(_key(b)) for b in branches), (AZURE_GATE_PINS,))


#: Azure built-in role "Key Vault Crypto Service Release User" (may request a secure key release; Azure
#: built-in roles list, clouds.md §2.4; components/azure/release_key.py RELEASE_ROLE_ID)
AZURE_RELEASE_ROLE_ID = "08bbd89e-9f13-488c-ac41-acfcb10c90ab"


def read_azure_release_role(inputs: Mapping[str, Any]) -> Gate | None:
    """A role assignment of :data:`AZURE_RELEASE_ROLE_ID`: the set ``{principal: <principalId>}`` (who may ask
    Key Vault for the release, besides the policy's claims); the assignments on one ``scope`` are one gate.
    None for any other role."""
    role = str(inputs.get("roleDefinitionId", ""))
    if not role.rstrip("/").endswith("/" + AZURE_RELEASE_ROLE_ID) and role != AZURE_RELEASE_ROLE_ID:
        return None
    return Gate("azure-release-role", "identity", (GateSet((("principal", str(inputs.get("principalId", ""))),)),),
                group=f"{AZURE_ROLE_ASSIGNMENT_TYPE} release role on {inputs.get('scope')}")


# -------------------------------------------------------------------------------------- Trustee
def read_trustee(inputs: Mapping[str, Any]) -> Gate | None:
    """The sets of a KBS registration's RVPS message (module docstring); None without one."""
    msg = inputs.get("rvps_message")
    if not isinstance(msg, Mapping):
        return None
    try:
        payload = loads_json(base64.b64decode(str(msg.get("payload", "")), validate=True).decode("utf-8"),
                             source="rvps_message.payload")
    except (binascii.Error, ValueError, TeeformError) as exc:
        return Gate("trustee-rvps", "image", (), error=f"rvps_message.payload is not base64 JSON: {exc}")
    if not isinstance(payload, Mapping):
        return Gate("trustee-rvps", "image", (), error="rvps_message.payload is not a JSON object")
    try:
        names = TRUSTEE_CLAIMS[Verifier(str(inputs.get("verifier")))]
    except ValueError:
        names = {}
    target = str(inputs.get("target", ""))
    prefix = f"teeform.{target}."
    by_set: dict[str, dict[str, list[str]]] = {}
    terms: list[str] = []
    for rv_id, vals in sorted(payload.items()):
        vs = [str(v).lower() for v in vals] if isinstance(vals, list) else [str(vals).lower()]
        rest = rv_id[len(prefix):] if rv_id.startswith(prefix) else rv_id
        if rest == "mr_td":
            if vs:
                terms.append(f"mr_td in [{', '.join(vs)}]")
            continue
        set_id, _, claim = rest.rpartition(".")
        by_set.setdefault(set_id or rv_id, {})[names.get(claim, claim)] = vs
    total = 0
    for claims in by_set.values():
        count = 1
        for v in claims.values():
            count = min(MAX_RELEASE_SETS + 1, count * len(v))
        total += count
        if total > MAX_RELEASE_SETS:
            return Gate("trustee-rvps", "image", (), error=f"rvps_message.payload allows more than {MAX_RELEASE_SETS} "
                        "measurement sets (the values of its claims multiply); not compared")
    sets = []
    for set_id, claims in by_set.items():
        if any(not v for v in claims.values()):
            continue  # a tombstone ([]): nothing of this set is admitted
        ns = list(claims)
        for combo in itertools.product(*(claims[n] for n in ns)):
            sets.append(GateSet(_key(dict(zip(ns, combo, strict=True))), sid=set_id))
    return Gate("trustee-rvps", "image", tuple(sets), tuple(terms))


#: resource type token -> reader (None from a reader: this resource releases nothing)
READERS: Mapping[str, Callable[[Mapping[str, Any]], Gate | None]] = {
    **{t: read_aws_policy for t in AWS_POLICY_TYPES},
    GCP_PROVIDER_TYPE: read_gcp_provider,
    GCP_KMS_MEMBER_TYPE: read_gcp_kms_member,
    AZURE_KEY_TYPE: read_azure_key,
    AZURE_ROLE_ASSIGNMENT_TYPE: read_azure_release_role,
    TRUSTEE_TYPE: read_trustee,
}


def read_gate(resource_type: str, inputs: Mapping[str, Any] | None) -> Gate | None:
    """The :class:`Gate` of one resource, or None when its type has no reader or it releases nothing."""
    reader = READERS.get(resource_type)
    return reader(inputs or {}) if reader else None


def gate_types() -> Sequence[str]:
    """Every resource type a reader is registered for."""
    return tuple(READERS)


__all__ = ["Gate", "GateSet", "READERS", "PINS_TEXT", "NITROTPM_KEYS", "AWS_ATTESTATION_PREFIX", "AWS_POLICY_TYPES",
           "GCP_PROVIDER_TYPE", "GCP_KMS_MEMBER_TYPE", "AZURE_KEY_TYPE", "AZURE_ROLE_ASSIGNMENT_TYPE", "AZURE_RELEASE_ROLE_ID",
           "TRUSTEE_TYPE", "read_azure_release_role", "aws_statement_sets",
           "cel_conjuncts", "cel_digest_clause", "read_aws_policy", "read_gcp_provider", "read_gcp_kms_member",
           "read_azure_key", "read_trustee", "read_gate", "gate_types"]
