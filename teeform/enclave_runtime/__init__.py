"""teeform's enclave runtime: deliver sealed secrets to the agent inside a Nitro Enclave.

Two halves talk over vsock (``AF_VSOCK``; the parent's CID is always 3, eif-nitro.md §6.1):

* **Enclave side** (:mod:`teeform.enclave_runtime.enclave`, layered into the EIF by
  ``teeform build eif --runtime`` and run before the agent): asks the parent for the sealed-secrets
  file and the instance role's credentials (:mod:`teeform.enclave_runtime.wire`, port
  :data:`CREDENTIALS_PORT`), opens a TCP -> vsock bridge to the parent's ``vsock-proxy``
  (:data:`KMS_PROXY_PORT`, the AWS default 8000, eif-nitro.md §6.4) with the KMS host name
  resolved to it, generates an ephemeral RSA-2048 key, gets an attestation document carrying the
  key from the Nitro Secure Module (:mod:`teeform.enclave_runtime.nsm`), calls KMS ``Decrypt``
  with ``Recipient`` and opens ``CiphertextForRecipient`` (:func:`teeform.seal.unseal_secrets`),
  then ``exec``\\ s the agent with the secrets as environment variables or as files in tmpfs.
* **Parent side** (:mod:`teeform.enclave_runtime.parent`, stdlib only so the enclave host's user
  data can install it next to nitro-cli): serves the instance role's IMDSv2 credentials (refreshed
  before they expire) and the sealed file on :data:`CREDENTIALS_PORT`, and writes the enclave's
  log stream (port :data:`LOG_PORT`) to the journal.

Transports are addresses (:mod:`teeform.enclave_runtime.transport`): ``vsock:CID:PORT`` in
production, ``tcp:HOST:PORT`` or ``unix:PATH`` where the kernel has no ``vsock_loopback`` (tests).
The protocol, ports, systemd units and trust boundaries are documented in
``docs/enclave-runtime.md``.

This package imports nothing heavy at import time: the parent side needs only the standard library.
"""

from __future__ import annotations

#: vsock port of the parent's credentials/sealed-file server (a teeform choice; clear of nitro-cli's
#: 9000 heartbeat port and the vsock-proxy's 8000, eif-nitro.md §3.3, §6.4).
CREDENTIALS_PORT = 9100
#: vsock port where the parent collects the enclave's stdout/stderr (a teeform choice).
LOG_PORT = 9101
#: vsock port of the parent's ``vsock-proxy`` to KMS (the AWS default, eif-nitro.md §6.4).
KMS_PROXY_PORT = 8000
#: The parent instance's vsock CID (eif-nitro.md §6.1).
PARENT_CID = 3
#: Wire protocol version (:mod:`teeform.enclave_runtime.wire`).
PROTOCOL_VERSION = 1
