"""Trustee (Confidential Containers KBS + attestation service + RVPS) artefacts from teeform manifests.

Pure, cloud-neutral code: no Pulumi, no network.

* :mod:`teeform.trustee.verifiers` -- which Trustee verifier claims carry which teeform value
  (``tdx``, ``az-tdx-vtpm``, ``az-snp-vtpm``), with the claim shapes' sources in the Trustee tree.
* :mod:`teeform.trustee.reference_values` -- RVPS ``sample`` messages, one measurement set per
  allowed manifest.
* :mod:`teeform.trustee.rego` -- the attestation-service policy (EAR trust claims) and the KBS
  resource policy, both in Rego, generated from the same sets.
* :mod:`teeform.trustee.kbs_client` -- the KBS admin API client (bearer JWT signed with the admin
  Ed25519 key).

Source: ``shared/reference/clouds.md`` §4.3-§4.5 and confidential-containers/trustee@78962cd4 (files
cited in each module). docs/trustee.md says which value each cloud's key release pins.
"""
