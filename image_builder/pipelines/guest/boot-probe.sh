#!/bin/sh
# teeform boot probe: a tiny /sbin/init for test images (tests/test_boot.py).
#
# Runs as PID 1 in the dm-verity root after the teeform initrd's switch_root. It prints, on the
# serial console, one "TEEFORM-PROBE <key>=<value>" line per fact and then powers off:
#   PCR<n>_SHA256   /sys/class/tpm/tpm0/pcr-sha256/<n> for n = 0..15 (Linux >= 5.12 PCR sysfs)
#   PCR<n>_SHA1     /sys/class/tpm/tpm0/pcr-sha1/<n> for n = 4, 11, 12
#   PCR<n>_SHA384   /sys/class/tpm/tpm0/pcr-sha384/<n> for n = 4, 7, 11, 12 (when the vTPM has that bank)
#   EVENTLOG        the firmware's TCG2 event log (securityfs binary_bios_measurements), base64, between
#                   "TEEFORM-PROBE-EVENTLOG-BEGIN" and "TEEFORM-PROBE-EVENTLOG-END" (tests/test_boot.py)
#   ROOT_MOUNT      the /proc/mounts line whose mount point is "/"
#   ROOT_ST_DEV     st_dev of / (decimal, Linux new_encode_dev), to compare with DM_DEV
#   DM_NAME, DM_UUID, DM_DEV, DM_SLAVES   of every /sys/block/dm-*, so the test can check that / is
#                   the "root" verity mapping (dm uuid CRYPT-VERITY-...) on the disk's partitions
# The block "TEEFORM-PROBE-BEGIN" ... "TEEFORM-PROBE-END" is parsed by tests/test_boot.py.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
[ -r /proc/mounts ] || mount -t proc proc /proc
[ -d /sys/class ] || mount -t sysfs sysfs /sys

i=0
while [ ! -r /sys/class/tpm/tpm0/pcr-sha256/11 ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done

echo "TEEFORM-PROBE-BEGIN"
for p in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
    [ -r /sys/class/tpm/tpm0/pcr-sha256/$p ] && echo "TEEFORM-PROBE PCR${p}_SHA256=$(cat /sys/class/tpm/tpm0/pcr-sha256/$p)"
done
for p in 4 11 12; do
    [ -r /sys/class/tpm/tpm0/pcr-sha1/$p ] && echo "TEEFORM-PROBE PCR${p}_SHA1=$(cat /sys/class/tpm/tpm0/pcr-sha1/$p)"
done
for p in 4 7 11 12; do
    [ -r /sys/class/tpm/tpm0/pcr-sha384/$p ] && echo "TEEFORM-PROBE PCR${p}_SHA384=$(cat /sys/class/tpm/tpm0/pcr-sha384/$p)"
done
while read -r dev mnt fstype opts rest; do
    [ "$mnt" = "/" ] && [ "$dev" != "rootfs" ] && echo "TEEFORM-PROBE ROOT_MOUNT=$dev $mnt $fstype $opts"
done < /proc/mounts
echo "TEEFORM-PROBE ROOT_ST_DEV=$(stat -c %d /)"
for d in /sys/block/dm-*; do
    [ -d "$d/dm" ] || continue
    echo "TEEFORM-PROBE DM_NAME=$(cat "$d/dm/name")"
    echo "TEEFORM-PROBE DM_UUID=$(cat "$d/dm/uuid")"
    echo "TEEFORM-PROBE DM_DEV=$(cat "$d/dev")"
    echo "TEEFORM-PROBE DM_SLAVES=$(ls "$d/slaves" | tr '\n' ' ')"
done
[ -d /sys/kernel/security/tpm0 ] || mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
if [ -r /sys/kernel/security/tpm0/binary_bios_measurements ]; then
    echo "TEEFORM-PROBE-EVENTLOG-BEGIN"
    base64 < /sys/kernel/security/tpm0/binary_bios_measurements
    echo "TEEFORM-PROBE-EVENTLOG-END"
fi
echo "TEEFORM-PROBE-END"
sync
poweroff -f
