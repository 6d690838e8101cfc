"""Boot a teeform disk image under QEMU (TCG) + OVMF + swtpm and read what the guest reports.

This is the proof-by-boot harness shared by the integration test (``tests/test_boot.py``) and the
README's VM example (``scripts/vm-demo.sh``). The guest's ``/sbin/init`` must be the boot probe
(``image_builder/pipelines/guest/boot-probe.sh``), which prints ``TEEFORM-PROBE <key>=<value>`` lines (PCRs read
from ``/sys/class/tpm/tpm0/pcr-sha256/<n>``, the root mount, the dm devices) and powers off.

Set-up follows ``shared/reference/measured-boot.md``: ``-accel tcg`` always (KVM hangs on these
hosts without vmx/svm; :func:`boot_accel` picks KVM only when it is usable), ``-nodefaults`` (otherwise OVMF tries a DVD first and PCR 4 changes), a fresh copy of
OVMF_VARS for every boot, swtpm (TPM 2.0) on a unix socket as the vTPM, ``-no-reboot``, and the whole
run bounded by ``timeout``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from teeform.run import find_tool

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
PROBE = Path(__file__).parent / "guest" / "boot-probe.sh"
BOOT_TIMEOUT = int(os.environ.get("TEEFORM_BOOT_TIMEOUT", "120"))  # seconds per boot (~20 s on 2 TCG cores)


def boot_accel() -> str:
    """``kvm`` when KVM is usable (CPU has vmx/svm and /dev/kvm is writable), else ``tcg``.

    ``TEEFORM_BOOT_ACCEL`` overrides. measured-boot.md: on hosts whose CPU lacks vmx/svm, ``-accel kvm``
    hangs with "KVM internal error", so KVM is never tried there.
    """
    forced = os.environ.get("TEEFORM_BOOT_ACCEL")
    if forced:
        return forced
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "tcg"
    has_virt = any(f in flags.split() for f in ("vmx", "svm"))
    return "kvm" if has_virt and os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


@dataclass
class Boot:
    """One boot: the serial log text, its path, the probe's key=value facts, qemu's exit status, seconds."""

    log: str
    log_path: Path
    probe: dict[str, str]
    returncode: int
    seconds: float
    accel: str = "tcg"
    timeout: int = BOOT_TIMEOUT

    def tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the serial log, headed by the boot time, qemu status and log path."""
        status = (f"killed after the {self.timeout} s time limit" if self.returncode == 124
                  else f"qemu exit status {self.returncode}")
        return (f"\n--- boot: {self.seconds:.1f} s, {status}, -accel {self.accel}; serial log {self.log_path} "
                f"(last {n} lines) ---\n" + "\n".join(self.log.splitlines()[-n:]))


def parse_probe(log: str) -> dict[str, str]:
    """Collect ``TEEFORM-PROBE <key>=<value>`` lines from a serial log (first value of each key wins)."""
    probe: dict[str, str] = {}
    for line in log.splitlines():
        line = line.strip()
        if line.startswith("TEEFORM-PROBE ") and "=" in line:
            k, v = line[len("TEEFORM-PROBE "):].split("=", 1)
            probe.setdefault(k, v.strip())
    return probe


def boot_disk(
    disk: Path,
    workdir: Path,
    *,
    ovmf_code: Path = OVMF_CODE,
    ovmf_vars: Path = OVMF_VARS,
    timeout: int = BOOT_TIMEOUT,
    memory_mib: int = 1024,
    disk_interface: str = "virtio",
) -> Boot:
    """Boot the raw GPT ``disk`` once (virtio-blk, or ``disk_interface="nvme"``: an emulated NVMe controller,
    QEMU ``docs/system/devices/nvme.rst``, as GCP C3/TDX machines offer) and return what the serial console said.

    ``workdir`` receives the swtpm state, the OVMF_VARS copy and ``serial.log``.

    Raises:
        ToolMissingError: qemu-system-x86_64 or swtpm is not installed.
    """
    qemu = find_tool("qemu-system-x86_64", reason="boot the image")
    swtpm = find_tool("swtpm", reason="provide the vTPM")
    workdir.mkdir(parents=True, exist_ok=True)
    tpmdir = workdir / "tpm"
    shutil.rmtree(tpmdir, ignore_errors=True)
    tpmdir.mkdir()
    vars_copy = workdir / "OVMF_VARS.fd"
    shutil.copyfile(ovmf_vars, vars_copy)  # fresh variables every boot (measured-boot.md, pitfalls)
    sock = tpmdir / "sock"
    tpm = subprocess.Popen(
        [swtpm, "socket", "--tpm2", "--tpmstate", f"dir={tpmdir}", "--ctrl", f"type=unixio,path={sock}",
         "--log", f"file={tpmdir / 'swtpm.log'},level=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    log_path = workdir / "serial.log"
    accel = boot_accel()
    t0 = time.monotonic()
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        argv = [
            "timeout", str(timeout), qemu, "-accel", accel, "-machine", "q35", "-m", str(memory_mib), "-smp", "2",
            "-nographic", "-display", "none", "-nodefaults", "-serial", f"file:{log_path}", "-monitor", "none",
            "-drive", f"if=pflash,format=raw,unit=0,file={ovmf_code},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-chardev", f"socket,id=chrtpm,path={sock}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
            "-device", "tpm-tis,tpmdev=tpm0",
            *(["-drive", f"file={disk},format=raw,if=none,id=bootdisk", "-device", "nvme,drive=bootdisk,serial=teeform0"]
              if disk_interface == "nvme" else ["-drive", f"file={disk},format=raw,if=virtio"]),
            "-no-reboot",
        ]  # fmt: skip
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout + 30)
    finally:
        tpm.terminate()
        try:
            tpm.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tpm.kill()
    seconds = time.monotonic() - t0
    log = log_path.read_bytes().decode("utf-8", "replace") if log_path.exists() else ""
    if proc.stdout:
        log += "\n[qemu stdout/stderr]\n" + proc.stdout.decode("utf-8", "replace")
    return Boot(log, log_path, parse_probe(log), proc.returncode, seconds, accel, timeout)


def make_probe_rootfs(dest: Path) -> Path:
    """Create a busybox-static root at ``dest`` whose ``/sbin/init`` is the boot probe.

    Raises:
        ToolMissingError: busybox (Debian ``busybox-static``) is not installed.
    """
    busybox = find_tool("busybox", reason="populate the probe root file system")
    (dest / "bin").mkdir(parents=True)
    (dest / "sbin").mkdir()
    shutil.copy2(busybox, dest / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", dest / "bin" / a)
    shutil.copy2(PROBE, dest / "sbin" / "init")
    os.chmod(dest / "sbin" / "init", 0o755)
    return dest
