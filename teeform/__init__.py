"""teeform: measured TEE images and attestation-gated keys, as Pulumi infrastructure-as-code."""

__version__ = "0.1.0"
