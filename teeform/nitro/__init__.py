"""AWS Nitro Enclaves evidence: attestation documents, their verification, and KMS ``Recipient`` replies.

* :mod:`teeform.nitro.attestation`: parse a COSE_Sign1 attestation document (``eif-nitro.md`` §4.2-§4.3).
* :mod:`teeform.nitro.verify`: the verification algorithm (signature, certificate chain to the pinned
  AWS Nitro Enclaves Root-G1, validity time, PCRs against manifests, nonce, debug mode; §4.4-§4.6).
* :mod:`teeform.nitro.kms_recipient`: decrypt a KMS ``CiphertextForRecipient`` (CMS EnvelopedData; §5.2).
"""
