#!/usr/bin/env bash
# The README's "Pull-request previews" example: the PR comment teeform writes for a real change.
#
# Two real EIF builds of the demo agent (as scripts/demo.sh builds it: Debian's kernel and busybox-static as
# STAND-IN Nitro blobs, inputs from the set-up's lock record): v1.0.0 with the nitro-cli default kernel
# command line ("main"), v1.1.0 with one more parameter ("the PR"). The PR also gives the enclave 6 GiB and
# keeps v1.0.0 allowed for 14 days (a rollover window). Both stacks are previewed offline
# (`teeform preview --json`), then `teeform preview diff --markdown` prints the comment on stdout.
# The clock is SOURCE_DATE_EPOCH (default 1700000000, as scripts/demo.sh), so the output is reproducible.
set -euo pipefail
cd "$(dirname "$0")/.."

TEEFORM=.venv/bin/teeform
PY=.venv/bin/python
OUT=build/pr-demo
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"

LOCK="$PY -m teeform.inputs_lock"
KERNEL=$($LOCK path kernel.vmlinuz) || exit 1
BUSYBOX=$($LOCK path busybox) || exit 1
[ -f "$KERNEL" ] && [ -x "$BUSYBOX" ] || { echo "error: $KERNEL or $BUSYBOX is missing (run scripts/setup.sh)" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/blobs"
$PY -m image_builder.inputs.demo_image --out "$OUT/image" --busybox "$BUSYBOX" >/dev/null
printf 'teeform demo placeholder: NOT the Nitro Secure Module driver. Use /usr/share/nitro_enclaves/blobs/nsm.ko.\n' \
  > "$OUT/blobs/nsm.ko"
CMDLINE='reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on'

build() {  # build VERSION CMDLINE
  $TEEFORM build eif --image "$OUT/image" --kernel "$KERNEL" --init "$BUSYBOX" --nsm "$OUT/blobs/nsm.ko" \
    --cmdline "$2" --name openclaw-agent --version "$1" --out "$OUT/v$1" >/dev/null
}
build 1.0.0 "$CMDLINE"
build 1.1.0 "$CMDLINE loglevel=4"

# The two stack files: stacks/Pulumi.dev.yaml with main's and with the PR's targets[0] changes.
$PY - "$OUT" "$SOURCE_DATE_EPOCH" <<'PYEOF'
import datetime as dt
import sys
from pathlib import Path

import yaml

out, sde = Path(sys.argv[1]), int(sys.argv[2])
until = (dt.datetime.fromtimestamp(sde, dt.UTC).date() + dt.timedelta(days=14)).isoformat()
for side, manifests, memory in (
    ("base", [f"{out}/v1.0.0/openclaw-agent.manifest.json"], 4096),
    ("head", [f"{out}/v1.1.0/openclaw-agent.manifest.json",
              {"path": f"{out}/v1.0.0/openclaw-agent.manifest.json", "until": until}], 6144),
):
    doc = yaml.safe_load(Path("stacks/Pulumi.dev.yaml").read_text())
    t = doc["config"]["teeform:targets"][0]
    t["manifests"], t["enclave"]["memoryMib"] = manifests, memory
    (out / side).mkdir(exist_ok=True)
    (out / side / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
PYEOF

for side in base head; do
  rc=0
  $TEEFORM preview --stack dev --stack-file "$OUT/$side/Pulumi.dev.yaml" --json > "$OUT/$side.json" || rc=$?
  [ "$rc" -le 1 ] || exit "$rc"
done
$TEEFORM preview diff "$OUT/base.json" "$OUT/head.json" --markdown --base-label main --head-label "PR #42" \
  --full-report "$OUT/summary.md"
