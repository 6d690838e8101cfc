#!/usr/bin/env bash
# Regenerate every transcript in docs/verify-and-seal.md: run from anywhere, prints Markdown-ready
# blocks (`$ command`, its output, `exit status N`) on stdout. Nothing here is mocked except what the
# doc says: the KMS endpoint is moto in server mode on 127.0.0.1, and the EIFs of section 3 are built
# from tiny stand-in blobs.
#
# Needs: scripts/setup.sh (the venv), `make demo` (stack dev allows build/demo/openclaw-agent.manifest.json),
# and the real attestation documents in tests/fixtures/nitro/ (provenance: its README).
# Values that change from run to run: the `--at now` time, moto's key id and port, ciphertexts.
set -uo pipefail
cd "$(dirname "$0")/.."

export PATH="$PWD/.venv/bin:$PATH"
PY=.venv/bin/python
FX=tests/fixtures/nitro
OUT=build/docs
DOC=evervault-2022-10-13-nondebug.cose

[ -f "$FX/expected.json" ] || { echo "error: $FX/expected.json not found (the Nitro fixtures)" >&2; exit 1; }
[ -f build/demo/openclaw-agent.manifest.json ] || { echo "error: run \`make demo\` first (stack dev needs its manifest)" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"

show() {  # show CMD...: print "$ CMD", run it (stderr merged), print its exit status
  echo "\$ $*"
  "$@" 2>&1
  echo "exit status $?"
}

# An allowed-measurements manifest for the real document: its PCR0/1/2/8 from expected.json (the EIF
# itself is not public, so the artifact fields are placeholders; only the measurements are compared).
$PY - "$FX/expected.json" "$DOC" "$OUT/evervault-2022-10-13.manifest.json" <<'EOF'
import json, sys
from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, write_manifest
pcrs = json.load(open(sys.argv[1]))[sys.argv[2]]["pcrs"]
meas = {"PCR0": pcrs["0"], "PCR1": pcrs["1"], "PCR2": pcrs["2"], "PCR8": pcrs["8"], "ImageSha384": pcrs["0"]}
write_manifest(Manifest(ArtifactKind.EIF, "evervault-fixture", "2022-10-13",
                        Artifact("not-public.eif", 1, "0" * 64, "0" * 96), meas,
                        (InputDigest("image", "not public", "0" * 64),), Builder("expected.json", "1"), 0), sys.argv[3])
EOF

echo "## 1. verify attestation"
echo "### pass"
show teeform verify attestation "$FX/$DOC" --manifest "$OUT/evervault-2022-10-13.manifest.json"
echo "### now"
show teeform verify attestation "$FX/$DOC" --manifest "$OUT/evervault-2022-10-13.manifest.json" --at now
echo "### stack dev"
show teeform verify attestation "$FX/$DOC" --stack dev
echo "### debug"
show teeform verify attestation "$FX/evervault-2022-10-12-debug.cose" --manifest "$OUT/evervault-2022-10-13.manifest.json"
echo "### truncated"
head -c 3000 "$FX/$DOC" > "$OUT/cut.cose"
echo "\$ head -c 3000 $FX/$DOC > $OUT/cut.cose"
show teeform verify attestation "$OUT/cut.cose" --stack dev
echo "### json"
echo "\$ teeform verify attestation $FX/$DOC --manifest $OUT/evervault-2022-10-13.manifest.json --json | head -n 16"
teeform verify attestation "$FX/$DOC" --manifest "$OUT/evervault-2022-10-13.manifest.json" --json | head -n 16

echo "## 2. seal"
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=eu-west-1
unset AWS_PROFILE AWS_SESSION_TOKEN
moto_server -H 127.0.0.1 -p "$PORT" > "$OUT/moto.log" 2>&1 &
MOTO=$!
trap 'kill "$MOTO" 2>/dev/null' EXIT
URL="http://127.0.0.1:$PORT"
$PY -c 'import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        break
    except OSError:
        time.sleep(0.1)' "$PORT"
KEY=$($PY -c 'import boto3, sys; print(boto3.client("kms", endpoint_url=sys.argv[1]).create_key()["KeyMetadata"]["Arn"])' "$URL")
printf 'OPENAI_API_KEY=sk-demo-not-real\nDB_URL="postgres://agent:pw@db/agent"\n' > "$OUT/secrets.env"
echo "\$ moto_server -H 127.0.0.1 -p $PORT &   # then boto3 create_key() -> $KEY"
show teeform seal --stack dev --in "$OUT/secrets.env" --out "$OUT/sealed.json" --key-id "$KEY" --endpoint-url "$URL"
echo "\$ stat -c '%A %s %n' $OUT/sealed.json"
stat -c '%A %s %n' "$OUT/sealed.json"
echo "\$ cat $OUT/sealed.json"
cat "$OUT/sealed.json"
show teeform unseal --in "$OUT/sealed.json" --endpoint-url "$URL" --format env
$PY - "$OUT/sealed.json" "$OUT/tampered.json" "$OUT/tampered2.json" <<'EOF'
import base64, json, sys
d = json.load(open(sys.argv[1]))
d["encryption_context"]["teeform:stack"] = d["aad"]["stack"] = "prod"
json.dump(d, open(sys.argv[2], "w"), indent=2)
d = json.load(open(sys.argv[1]))
ct = bytearray(base64.b64decode(d["ciphertext"])); ct[0] ^= 1
d["ciphertext"] = base64.b64encode(bytes(ct)).decode()
json.dump(d, open(sys.argv[3], "w"), indent=2)
EOF
echo "\$ # $OUT/tampered.json: the stack changed to \"prod\" in both encryption_context and aad"
show teeform unseal --in "$OUT/tampered.json" --endpoint-url "$URL"
echo "\$ # $OUT/tampered2.json: one bit of the ciphertext flipped"
show teeform unseal --in "$OUT/tampered2.json" --endpoint-url "$URL"
echo "\$ # no --key-id, and no Pulumi CLI on PATH"
PATH="$PWD/.venv/bin:/usr/bin:/bin" show teeform seal --stack dev --in "$OUT/secrets.env" --out "$OUT/sealed2.json" --endpoint-url "$URL"
echo "\$ ls $OUT/sealed2.json"
ls "$OUT/sealed2.json" 2>&1

echo "## 3. measurements diff"
D="$OUT/diff"
mkdir -p "$D/blobs"
printf 'stand-in kernel\n' > "$D/blobs/bzImage"
printf 'stand-in init\n' > "$D/blobs/init"
printf 'stand-in nsm.ko\n' > "$D/blobs/nsm.ko"
$PY - "$D" <<'EOF'
import sys
from pathlib import Path
from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout
d = Path(sys.argv[1])
for v in ("1.0.0", "1.1.0"):
    blob = layer_blob(d / "layers", [LayerEntry("app/agent", "file", f"#!/bin/sh\necho agent {v}\n".encode(), mode=0o755)], mtime=0)
    write_oci_layout(d / f"image-{v}", [blob], image_config([blob.diff_id], cmd=["/app/agent"], env=["PATH=/bin"], created=0),
                     ref_name=f"agent:{v}")
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes -days 365 -subj /CN=release-signer-2026 \
  -keyout "$D/signer1.key" -out "$D/signer1.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes -days 365 -subj /CN=release-signer-2027 \
  -keyout "$D/signer2.key" -out "$D/signer2.pem" 2>/dev/null
build() {  # build OUTDIR IMAGE [extra...]
  local out=$1 img=$2; shift 2
  SOURCE_DATE_EPOCH=1700000000 teeform build eif --image "$img" --kernel "$D/blobs/bzImage" --init "$D/blobs/init" \
    --nsm "$D/blobs/nsm.ko" --cmdline "console=ttyS0" --name agent --out "$out" "$@" > /dev/null 2>&1 \
    || { echo "error: build $out failed" >&2; exit 1; }
}
build "$D/v1" "$D/image-1.0.0" --signing-key "$D/signer1.key" --signing-cert "$D/signer1.pem"
build "$D/v2" "$D/image-1.1.0" --signing-key "$D/signer1.key" --signing-cert "$D/signer1.pem"
build "$D/v2-resigned" "$D/image-1.1.0" --signing-key "$D/signer2.key" --signing-cert "$D/signer2.pem"
echo "\$ teeform build eif --image $D/image-1.0.0 ... --signing-cert $D/signer1.pem --out $D/v1   # and 1.1.0 -> $D/v2"
show teeform measurements diff "$D/v1/agent.manifest.json" "$D/v2/agent.manifest.json"
echo "### markdown"
show teeform measurements diff "$D/v1/agent.manifest.json" "$D/v2/agent.manifest.json" --markdown
echo "### resigned"
show teeform measurements diff "$D/v2/agent.manifest.json" "$D/v2-resigned/agent.manifest.json"
