#!/usr/bin/env bash
# One-stop set-up for a fresh Debian 12 machine (run as root, or with sudo available).
#  * Debian tools teeform drives or uses as oracles (veritysetup, mkfs.erofs, qemu, OVMF, swtpm, ...)
#  * systemd 254 from bookworm-backports, unpacked under .cache/sd254 (ukify, systemd-measure, stub),
#    without replacing the machine's own systemd
#  * demo/test inputs: Debian's kernel (a stand-in for the Nitro kernel blob) unpacked under .cache/debian
#  * the Python virtualenv .venv with pinned requirements and teeform installed editable
# Idempotent: each step is skipped when its stamp is current. Set TEEFORM_SKIP_APT=1 to skip apt.
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

  # systemd 254 (bookworm-backports): ukify, systemd-measure and the 254 stub, unpacked privately.
  if [ ! -x "$CACHE/sd254/usr/lib/systemd/ukify" ] && [ ! -x "$CACHE/sd254/lib/systemd/ukify" ]; then
    log "unpacking systemd 254 from bookworm-backports into .cache/sd254"
    tmp=$(mktemp -d); (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root systemd/bookworm-backports \
        systemd-boot-efi/bookworm-backports libsystemd-shared/bookworm-backports >/dev/null)
    rm -rf "$CACHE/sd254.tmp"; mkdir -p "$CACHE/sd254.tmp"
    for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$CACHE/sd254.tmp"; done
    rm -rf "$CACHE/sd254"; mv "$CACHE/sd254.tmp" "$CACHE/sd254"; rm -rf "$tmp"
  fi

  # Debian's kernel, unpacked (not installed): the demo's stand-in for the Nitro bzImage, and the
  # kernel of the measured VM image.
  if ! ls "$CACHE"/debian/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    log "unpacking $kpkg into .cache/debian/kernel"
    tmp=$(mktemp -d); (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >/dev/null)
    rm -rf "$CACHE/debian/kernel.tmp"; mkdir -p "$CACHE/debian/kernel.tmp"
    dpkg-deb -x "$tmp"/*.deb "$CACHE/debian/kernel.tmp"
    rm -rf "$CACHE/debian/kernel"; mv "$CACHE/debian/kernel.tmp" "$CACHE/debian/kernel"; rm -rf "$tmp"
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
log "set-up complete"
