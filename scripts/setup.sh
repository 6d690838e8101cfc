#!/usr/bin/env bash
# One-stop set-up for a fresh Debian 12 machine (run as root, or with sudo available).
#  * Debian tools teeform drives or uses as oracles (veritysetup, mkfs.erofs, qemu, OVMF, swtpm, ...)
#  * systemd 254 from bookworm-backports, unpacked under .cache/sd254 (ukify, systemd-measure, stub),
#    without replacing the machine's own systemd
#  * demo/test inputs: Debian's kernel (a stand-in for the Nitro kernel blob) unpacked under .cache/debian
#  * the Python virtualenv .venv with pinned requirements and teeform installed editable
#  * the inputs lock .cache/inputs.lock.json: package, version, path and sha256 of every input the tests
#    and demos use (teeform/inputs_lock.py writes and reads it)
# Idempotent: each step is skipped when its stamp (or provenance record) is current. Set
# TEEFORM_SKIP_APT=1 to skip apt; then missing inputs are an error. To move to Debian's current kernel,
# remove .cache/debian/kernel and run this again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/.cache
mkdir -p "$CACHE"
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

APT_PACKAGES=(
  busybox-static cpio                      # demo OCI image, initrds
  cryptsetup-bin                           # veritysetup: oracle for the dm-verity tree
  erofs-utils squashfs-tools               # root filesystem images
  dosfstools mtools fdisk gdisk            # ESP + GPT
  qemu-utils qemu-system-x86 ovmf swtpm swtpm-tools   # disk formats, measured boot
  systemd-boot-efi                         # the bookworm (252) EFI stub
  pesign sbsigntool osslsigncode binutils  # Authenticode / PE oracles
  python3-pefile                           # /usr/bin/python3 runs ukify 254 (.cache/sd254), the UKI oracle
  python3-venv zstd xz-utils
  openssl                                  # EIF signing tests: P-384 key/cert and the ECDSA verification oracle
  systemd                                  # systemd-analyze verify: the parent-side units (enclave runtime)
  skopeo                                   # oracle for `teeform build oci`: skopeo inspect --raw oci:DIR (registry digest)
  kmod                                     # modinfo: oracle for the Hyper-V initrd modules (issue 10)
)
BPO_LIST=/etc/apt/sources.list.d/teeform-bookworm-backports.sources

if [ "${TEEFORM_SKIP_APT:-0}" != 1 ]; then
  stamp=$CACHE/apt.stamp
  want=$(printf '%s\n' "${APT_PACKAGES[@]}" | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if [ ! -f "$BPO_LIST" ]; then
      log "adding bookworm-backports to apt sources ($BPO_LIST)"
      $SUDO tee "$BPO_LIST" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    log "apt-get install ${#APT_PACKAGES[@]} Debian packages"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
    echo "$want" > "$stamp"
  fi
fi

# Python virtualenv with pinned dependencies.
stamp=$ROOT/.venv/.teeform-stamp
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating .venv and installing pinned Python requirements"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import teeform, pulumi, pulumi_aws, pulumi_policy, cbor2"
  echo "$want" > "$stamp"
fi

# Inputs unpacked from .debs (not installed). Each directory carries a provenance record
# (.teeform-debs.json: package, version, .deb name and sha256) and is kept as long as it is complete,
# so the demo's measurements do not change under a machine when Debian publishes a new kernel.
# `python -m teeform.inputs_lock unpack` checks the file set before moving it into place: a .deb
# that no longer ships what teeform needs fails here, with one line, not in the tests.
LOCK="$ROOT/.venv/bin/python -m teeform.inputs_lock"
APT_UPDATED=0
fetch() {  # fetch SOURCE DEST PACKAGE...: apt-get download PACKAGE... and unpack them into DEST
  local source=$1 dest=$2; shift 2
  if [ "${TEEFORM_SKIP_APT:-0}" = 1 ]; then
    echo "error: $dest is missing or incomplete and TEEFORM_SKIP_APT=1 forbids fetching it" >&2; exit 1
  fi
  [ "$APT_UPDATED" = 1 ] || { $SUDO apt-get update -q >/dev/null; APT_UPDATED=1; }
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$@" >/dev/null) \
    || { echo "error: apt-get download $* failed" >&2; rm -rf "$tmp"; exit 1; }
  $LOCK unpack "$source" "$dest" "$tmp"/*.deb || { rm -rf "$tmp"; exit 1; }
  rm -rf "$tmp"
}
why() { [ -e "$1" ] && echo "$1 is incomplete or was unpacked by an older setup.sh (no provenance record)" \
                    || echo "$1 is missing"; }

# systemd 254 (bookworm-backports): ukify, systemd-measure and the 254 stub, unpacked privately.
if ! $LOCK have sd254 "$CACHE/sd254"; then
  log "$(why .cache/sd254); unpacking systemd 254 from bookworm-backports"
  fetch sd254 "$CACHE/sd254" systemd/bookworm-backports systemd-boot-efi/bookworm-backports \
        libsystemd-shared/bookworm-backports
fi

# Debian's kernel: the demo's stand-in for the Nitro bzImage, and the kernel of the measured VM image.
# An older kernel already unpacked with its provenance record is kept (the lock records which one).
if ! $LOCK have kernel "$CACHE/debian/kernel"; then
  [ "${TEEFORM_SKIP_APT:-0}" = 1 ] || [ "$APT_UPDATED" = 1 ] || { $SUDO apt-get update -q >/dev/null; APT_UPDATED=1; }
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$kpkg" ] || { echo "error: apt-cache depends linux-image-amd64 names no linux-image-<release> package" >&2; exit 1; }
  log "$(why .cache/debian/kernel); unpacking $kpkg"
  mkdir -p "$CACHE/debian"
  fetch kernel "$CACHE/debian/kernel" "$kpkg"
fi

# The lock record: every input's package, version, path and sha256 (.cache/inputs.lock.json).
# Rewritten only when something changed; vector pins (tests/vectors/pins.json) are checked each run.
$LOCK write --packages "${APT_PACKAGES[@]}" || exit 1
log "set-up complete"
