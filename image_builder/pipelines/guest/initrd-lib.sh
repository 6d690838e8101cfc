# teeform initrd library: pure helpers sourced by /init (image_builder/pipelines/guest/initrd-init.sh).
# Kept separate so tests/test_initrd.py can run them with busybox sh on the build host.
# Needs: fatal() defined by the caller; busybox cut, od, dd, tr, grep, readlink, basename.

# PARTUUIDs of the Discoverable Partitions Specification: the first and last 16 bytes of the
# root hash, formatted in byte order as 8-4-4-4-12.
dps_uuid() {
    h=$1
    echo "$(echo "$h" | cut -c1-8)-$(echo "$h" | cut -c9-12)-$(echo "$h" | cut -c13-16)-$(echo "$h" | cut -c17-20)-$(echo "$h" | cut -c21-32)"
}

# Unique partition GUID of GPT entry <n> (1-based) on disk node <dev>, as lowercase 8-4-4-4-12.
# GPT header at LBA 1: partition-entry LBA (u64 LE) at offset 72, entry size (u32 LE) at 84;
# the unique GUID is at offset 16 of an entry, stored mixed-endian (UEFI 2.10 §5.3).
gpt_partuuid() {
    dev=$1; n=$2; bs=$3
    [ "$(dd if="$dev" bs=1 skip="$bs" count=8 2>/dev/null)" = "EFI PART" ] || return 1
    elba=$(od -A n -t u8 -j $((bs + 72)) -N 8 "$dev" | tr -d ' ')
    esz=$(od -A n -t u4 -j $((bs + 84)) -N 4 "$dev" | tr -d ' ')
    set -- $(od -A n -t x1 -j $((elba * bs + (n - 1) * esz + 16)) -N 16 "$dev")
    [ $# -eq 16 ] || return 1
    echo "$4$3$2$1-$6$5-$8$7-$9${10}-${11}${12}${13}${14}${15}${16}"
}

# Print /dev/<node> for a PARTUUID=, PARTLABEL= or /dev/ spec, or nothing when not (yet) present.
resolve_dev() {
    spec=$1
    case "$spec" in
        /dev/*) [ -b "$spec" ] && echo "$spec"; return 0 ;;
        PARTUUID=*) want=$(echo "${spec#PARTUUID=}" | tr 'A-F' 'a-f') ;;
        PARTLABEL=*) want=${spec#PARTLABEL=} ;;
        *) fatal "unsupported device spec: $spec (use PARTUUID=, PARTLABEL= or /dev/...)" ;;
    esac
    for p in /sys/class/block/*; do
        [ -f "$p/partition" ] || continue
        node=${p##*/}
        case "$spec" in
            PARTLABEL=*)
                grep -qx "PARTNAME=$want" "$p/uevent" 2>/dev/null && { echo "/dev/$node"; return 0; }
                ;;
            PARTUUID=*)
                disk=$(basename "$(dirname "$(readlink -f "$p")")")
                bs=$(cat "/sys/class/block/$disk/queue/logical_block_size" 2>/dev/null || echo 512)
                got=$(gpt_partuuid "/dev/$disk" "$(cat "$p/partition")" "$bs") || continue
                [ "$got" = "$want" ] && { echo "/dev/$node"; return 0; }
                ;;
        esac
    done
    return 0
}

# Print veritysetup flags, one per line, for a systemd.verity_root_options= value (systemd 254
# names, uki-verity.md §5). Options that weaken verification (ignore-corruption,
# ignore-zero-blocks, check-at-most-once, ...) are refused: returns 1 and prints the bad entry.
verity_flags() {
    for o in $(echo "$1" | tr ',' ' '); do
        case "$o" in
            superblock=false|superblock=no|superblock=0) echo "--no-superblock" ;;
            superblock=true|superblock=yes|superblock=1) ;;
            hash-offset=*|data-blocks=*|salt=*|hash=*|format=*|data-block-size=*|hash-block-size=*|uuid=*) echo "--$o" ;;
            panic-on-corruption|restart-on-corruption) echo "--$o" ;;
            *) echo "$o"; return 1 ;;
        esac
    done
}
