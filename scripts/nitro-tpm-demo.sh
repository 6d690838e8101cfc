#!/usr/bin/env bash
# NitroTPM VM demo (offline): the vm-demo disk (UKI + dm-verity, PCR4/PCR11/PCR12 predicted by `teeform build
# vm-image`) -> `teeform preview --stack nitro-tpm --json`, the document whose KMS key policy releases the key
# only to a NitroTPM reporting that disk's PCR4 and PCR12 (stacks/Pulumi.nitro-tpm.yaml, docs/aws-vm.md).
#
#  1. TEEFORM_VM_DEMO_NO_BOOT=1 scripts/vm-demo.sh: build build/vm-demo/image/agent-vm.{raw,manifest.json}
#     (no QEMU boot);
#  2. teeform preview --stack nitro-tpm --json (the Pulumi program under the mock engine + the policy pack).
#
# stdout is the preview document only (scripts/readme-examples.py --only nitro-tpm-demo abridges it).
set -euo pipefail
cd "$(dirname "$0")/.."
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
echo "==> [1/2] TEEFORM_VM_DEMO_NO_BOOT=1 scripts/vm-demo.sh" >&2
TEEFORM_VM_DEMO_NO_BOOT=1 scripts/vm-demo.sh >&2
echo "==> [2/2] teeform preview --stack nitro-tpm --json" >&2
.venv/bin/teeform preview --stack nitro-tpm --json --today "$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)"
