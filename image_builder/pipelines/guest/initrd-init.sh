#!/bin/sh
# teeform initrd /init: open the dm-verity root named by roothash= and switch_root into it.
#
# Runs as PID 1 from the initramfs that image_builder/pipelines/initrd.py builds (busybox-static applets,
# veritysetup + its shared libraries, the kernel modules listed in /etc/teeform/modules, and the
# helpers of initrd-lib.sh installed as /lib/teeform/initrd-lib.sh).
# Everything it acts on comes from /proc/cmdline, which systemd-stub took from the UKI's .cmdline
# section, so it is covered by PCR 11 (shared/reference/uki-verity.md §1.2):
#
#   roothash=<hex>                     required; the dm-verity root hash (uki-verity.md §5)
#   systemd.verity_root_data=<dev>     data device; default PARTUUID = first 128 bits of roothash
#   systemd.verity_root_hash=<dev>     hash device; default PARTUUID = last 128 bits of roothash
#                                      (Discoverable Partitions Specification, uki-verity.md §5)
#   systemd.verity_root_options=a,b=c  veritysetup options, systemd 254 names (uki-verity.md §5):
#                                      superblock=false hash-offset= data-blocks= salt= hash=
#                                      format= data-block-size= hash-block-size= uuid=
#                                      panic-on-corruption restart-on-corruption
#   rootfstype=erofs|squashfs          default: try erofs, then squashfs
#   init=<path>                        program to exec in the root; default /sbin/init
#   teeform.rootwait=<seconds>         how long to wait for the partitions; default 30
#
# <dev> is PARTUUID=<uuid>, PARTLABEL=<gpt partition name> or /dev/<node>.
# Any failure prints "teeform-initrd: FATAL: ..." on the console and powers the machine off: the
# initrd never falls back to an unverified root and never starts a shell.

export PATH=/sbin:/bin
export DM_DISABLE_UDEV=1   # no udev in this initrd: libdevmapper creates /dev/mapper nodes itself

log() { echo "teeform-initrd: $*"; }
fatal() {
    echo "teeform-initrd: FATAL: $*"
    sync
    poweroff -f
    exit 1
}

mkdir -p /proc /sys /dev /run /sysroot
mount -t proc proc /proc || fatal "cannot mount /proc"
mount -t sysfs sysfs /sys || fatal "cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || fatal "cannot mount /dev"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || fatal "cannot mount /run"
mkdir -p /run/cryptsetup

ROOTHASH=""; DATA_SPEC=""; HASH_SPEC=""; VOPTS=""; FSTYPE=""; INIT=/sbin/init; ROOTWAIT=30
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        roothash=*) ROOTHASH=${arg#roothash=} ;;
        systemd.verity_root_data=*) DATA_SPEC=${arg#systemd.verity_root_data=} ;;
        systemd.verity_root_hash=*) HASH_SPEC=${arg#systemd.verity_root_hash=} ;;
        systemd.verity_root_options=*) VOPTS=${arg#systemd.verity_root_options=} ;;
        rootfstype=*) FSTYPE=${arg#rootfstype=} ;;
        init=*) INIT=${arg#init=} ;;
        teeform.rootwait=*) ROOTWAIT=${arg#teeform.rootwait=} ;;
    esac
done

case "$ROOTHASH" in
    "") fatal "no roothash= on the kernel command line" ;;
    *[!0-9a-f]*) fatal "roothash= is not lowercase hex: $ROOTHASH" ;;
esac
[ ${#ROOTHASH} -ge 64 ] || fatal "roothash= is shorter than 256 bits: $ROOTHASH"

. /lib/teeform/initrd-lib.sh
[ -n "$DATA_SPEC" ] || DATA_SPEC="PARTUUID=$(dps_uuid "$(echo "$ROOTHASH" | cut -c1-32)")"
[ -n "$HASH_SPEC" ] || HASH_SPEC="PARTUUID=$(dps_uuid "$(echo "$ROOTHASH" | cut -c$((${#ROOTHASH} - 31))-)")"

# Kernel modules, in dependency order (written by image_builder/pipelines/initrd.py).
if [ -f /etc/teeform/modules ]; then
    while read -r ko; do
        [ -n "$ko" ] || continue
        insmod "/lib/modules/$ko" 2>/dev/null || log "warning: insmod $ko failed (built in or already loaded?)"
    done < /etc/teeform/modules
fi

log "waiting for root data $DATA_SPEC and hash $HASH_SPEC"
DATA_DEV=""; HASH_DEV=""; i=0
while [ $i -lt $((ROOTWAIT * 10)) ]; do
    [ -n "$DATA_DEV" ] || DATA_DEV=$(resolve_dev "$DATA_SPEC")
    [ -n "$HASH_DEV" ] || HASH_DEV=$(resolve_dev "$HASH_SPEC")
    [ -n "$DATA_DEV" ] && [ -n "$HASH_DEV" ] && break
    usleep 100000
    i=$((i + 1))
done
[ -n "$DATA_DEV" ] || fatal "root data partition $DATA_SPEC not found after ${ROOTWAIT}s"
[ -n "$HASH_DEV" ] || fatal "root hash partition $HASH_SPEC not found after ${ROOTWAIT}s"

# systemd.verity_root_options= -> veritysetup flags (weakening options are refused).
flags=$(verity_flags "$VOPTS") || fatal "unsupported or unsafe systemd.verity_root_options entry: $(echo "$flags" | tail -n 1)"
set -- $flags

log "opening dm-verity root: data $DATA_DEV hash $HASH_DEV roothash $ROOTHASH"
veritysetup open "$DATA_DEV" root "$HASH_DEV" "$ROOTHASH" "$@" || fatal "veritysetup open failed"
[ -b /dev/mapper/root ] || fatal "/dev/mapper/root did not appear"
veritysetup status root | while read -r line; do log "  $line"; done

mounted=""
for t in ${FSTYPE:-erofs squashfs}; do
    if mount -t "$t" -o ro /dev/mapper/root /sysroot 2>/dev/null; then mounted=$t; break; fi
done
[ -n "$mounted" ] || fatal "cannot mount /dev/mapper/root (tried ${FSTYPE:-erofs squashfs}); see the kernel log above"
log "root mounted read-only ($mounted); switching to $INIT"

for d in dev proc sys run; do
    if [ -d "/sysroot/$d" ]; then mount --move "/$d" "/sysroot/$d"; else umount -l "/$d"; fi
done
exec switch_root /sysroot "$INIT" || fatal "switch_root to $INIT failed"
