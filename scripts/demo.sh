#!/usr/bin/env bash
# `make demo`: build a real, reproducible EIF from Debian binaries, measure it, then preview the dev stack.
#
#  1. an OCI image layout of the "agent" (a stand-in: Debian's static busybox, Cmd prints a line and sleeps),
#     built without Docker by image_builder/inputs/demo_image.py;
#  2. `teeform build eif` with STAND-IN Nitro blobs (see the banner below);
#  3. `teeform measure` on the result;
#  4. `teeform preview --stack dev` (stacks/Pulumi.dev.yaml references build/demo/openclaw-agent.manifest.json).
#
# SOURCE_DATE_EPOCH is a constant (override it in the environment): the image's timestamps (and so its
# digest) and the mtime of every ramdisk entry (so PCR0, PCR1 and PCR2) stay the same from one commit to
# the next. The manifest records it, so a rebuild with the same value gives the same PCRs.
set -euo pipefail
cd "$(dirname "$0")/.."

TEEFORM=.venv/bin/teeform
PY=.venv/bin/python
OUT=build/demo
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"

bold() { printf '\033[1m%s\033[0m\n' "$*"; }

# Inputs from the set-up's lock record (.cache/inputs.lock.json, teeform/inputs_lock.py): no guessed names.
LOCK="$PY -m teeform.inputs_lock"
KERNEL=$($LOCK path kernel.vmlinuz) || exit 1
BUSYBOX=$($LOCK path busybox) || exit 1
KERNEL_PKG="$($LOCK get kernel.vmlinuz.package) $($LOCK get kernel.vmlinuz.version)"
BUSYBOX_PKG="$($LOCK get busybox.package) $($LOCK get busybox.version)"
[ -f "$KERNEL" ] && [ -x "$BUSYBOX" ] || { echo "error: $KERNEL or $BUSYBOX is missing (run scripts/setup.sh)" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/blobs"

bold "==> [1/4] building the agent's OCI image (stand-in: busybox-static) into $OUT/image"
$PY -m image_builder.inputs.demo_image --out "$OUT/image" --busybox "$BUSYBOX"

# Stand-in blobs. The nsm.ko placeholder is NOT a kernel module; this EIF would not boot in a Nitro Enclave.
printf 'teeform demo placeholder: NOT the Nitro Secure Module driver. Use /usr/share/nitro_enclaves/blobs/nsm.ko.\n' \
  > "$OUT/blobs/nsm.ko"
# The x86_64 nitro-cli default command line (aws-nitro-enclaves-cli blobs/x86_64/cmdline, eif-nitro.md §3.1).
printf 'reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on\n' \
  > "$OUT/blobs/cmdline"

cat >&2 <<EOF

  NOTE: this demo uses STAND-IN blobs, so the EIF is real and reproducible but will not boot on Nitro:
    kernel   $KERNEL   ($KERNEL_PKG: Debian's kernel instead of the Nitro bzImage)
    init     $BUSYBOX   ($BUSYBOX_PKG: static busybox instead of the Nitro bootstrap init)
    nsm.ko   $OUT/blobs/nsm.ko   (a small placeholder text file)
    cmdline  $OUT/blobs/cmdline   (the real x86_64 nitro-cli default)
  On a Nitro host (aws-nitro-enclaves-cli-devel installed) pass the real ones instead:
    --kernel /usr/share/nitro_enclaves/blobs/bzImage --init /usr/share/nitro_enclaves/blobs/init \\
    --nsm /usr/share/nitro_enclaves/blobs/nsm.ko --cmdline @/usr/share/nitro_enclaves/blobs/cmdline

EOF

bold "==> [2/4] teeform build eif"
$TEEFORM build eif \
  --image "$OUT/image" \
  --kernel "$KERNEL" \
  --init "$BUSYBOX" \
  --nsm "$OUT/blobs/nsm.ko" \
  --cmdline "@$OUT/blobs/cmdline" \
  --name openclaw-agent \
  --out "$OUT"

# Sign the manifest (in-toto + DSSE, ECDSA P-256; docs/signing.md). The prod stack trusts this key
# (stacks/Pulumi.prod.yaml teeform:trustedManifestKeys). DEMO ONLY: the key pair is generated here once,
# kept under build/demo-keys/ (untracked); a real release key lives in CI secrets or a KMS.
KEYS=build/demo-keys
if [ ! -f "$KEYS/manifest-signing.key" ]; then
  mkdir -p "$KEYS" && chmod 700 "$KEYS"
  openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$KEYS/manifest-signing.key"
  openssl pkey -in "$KEYS/manifest-signing.key" -pubout -out "$KEYS/manifest-signing.pub"
fi
$TEEFORM sign "$OUT/openclaw-agent.manifest.json" --key "$KEYS/manifest-signing.key"

bold "==> [3/4] teeform measure $OUT/openclaw-agent.eif"
$TEEFORM measure "$OUT/openclaw-agent.eif"

bold "==> [4/4] teeform preview --stack dev"
$TEEFORM preview --stack dev
