#!/usr/bin/env bash
# Sign demo manifests (in-toto + DSSE, ECDSA P-256; docs/signing.md) with the demo signing key.
# Usage: scripts/demo-sign.sh MANIFEST...
# The production-environment example stacks (stacks/Pulumi.prod.yaml, stacks/Pulumi.gcp.yaml) trust this key
# through teeform:trustedManifestKeys, and the policy manifest-signed is mandatory in prod.
# DEMO ONLY: the key pair is generated here once and kept under build/demo-keys/ (untracked); a real release
# key lives in CI secrets or a KMS, and the stack pins its public half.
set -euo pipefail
cd "$(dirname "$0")/.."
TEEFORM=.venv/bin/teeform
KEYS=build/demo-keys
if [ ! -f "$KEYS/manifest-signing.key" ]; then
  mkdir -p "$KEYS" && chmod 700 "$KEYS"
  openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$KEYS/manifest-signing.key.tmp"
  openssl pkey -in "$KEYS/manifest-signing.key.tmp" -pubout -out "$KEYS/manifest-signing.pub.tmp"
  mv "$KEYS/manifest-signing.pub.tmp" "$KEYS/manifest-signing.pub"
  mv "$KEYS/manifest-signing.key.tmp" "$KEYS/manifest-signing.key"
fi
for m in "$@"; do
  $TEEFORM sign "$m" --key "$KEYS/manifest-signing.key"
done
