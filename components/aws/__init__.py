"""AWS components: Nitro Enclave parent, attested KMS key, network, artifact store (pulumi-aws 7.x); for VM
images: the raw disk -> snapshot -> AMI pipeline, the VM and its NitroTPM-attested key (``nitro_tpm``).

Resource arguments use the typed ``*Args`` classes for nested values, because misspelled keys of
nested dicts are silently passed through (shared/reference/pulumi.md §2.2 item 2).
"""
