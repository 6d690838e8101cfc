#!/usr/bin/env bash
# GCP Confidential Space demo (offline): the demo agent's OCI image -> `teeform build oci` -> `teeform preview
# --stack gcp`, which shows the Workload Identity Federation condition teeform writes for that image digest.
#
#  1. the deterministic OCI image layout of the demo agent (image_builder/inputs/demo_image.py, Debian's
#     busybox-static), the same image `make demo` builds;
#  2. `teeform build oci`: its registry digest (sha256 of the manifest blob) in build/demo-oci/;
#  3. `teeform preview --stack gcp` (stacks/Pulumi.gcp.yaml references build/demo-oci/openclaw-agent.manifest.json
#     and, for its confidential-VM target, build/vm-demo/image/agent-vm.manifest.json: built here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

TEEFORM=.venv/bin/teeform
PY=.venv/bin/python
OUT=build/demo-oci
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
BUSYBOX=$($PY -m teeform.inputs_lock path busybox) || exit 1

rm -rf "$OUT"
mkdir -p "$OUT"
echo "==> [1/3] building the agent's OCI image into $OUT/image" >&2
$PY -m image_builder.inputs.demo_image --out "$OUT/image" --busybox "$BUSYBOX" >&2
echo "==> [2/3] teeform build oci" >&2
$TEEFORM build oci --image "$OUT/image" --out "$OUT" --name openclaw-agent \
  --repository europe-west4-docker.pkg.dev/my-teeform-project/teeform/openclaw-agent
if [ ! -f build/vm-demo/image/agent-vm.manifest.json ] || [ ! -f build/vm-demo/image/agent-vm.tar.gz ]; then
  echo "==> the agent-vm target's disk: TEEFORM_VM_DEMO_NO_BOOT=1 scripts/vm-demo.sh (build only)" >&2
  TEEFORM_VM_DEMO_NO_BOOT=1 scripts/vm-demo.sh >&2
fi
# The gcp stack is a production environment: manifest-signed is mandatory, so sign both manifests with the
# demo key it trusts (teeform:trustedManifestKeys; DEMO ONLY, see scripts/demo-sign.sh).
scripts/demo-sign.sh "$OUT/openclaw-agent.manifest.json" build/vm-demo/image/agent-vm.manifest.json >&2
echo "==> [3/3] teeform preview --stack gcp" >&2
$TEEFORM preview --stack gcp
