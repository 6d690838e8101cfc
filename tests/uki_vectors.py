"""Inputs and published values of the UKI test vectors (provenance: tests/vectors/README.md).

TV-1/TV-2/TV-3 were produced with the Debian tools named in tests/vectors/README.md (systemd-measure
252.39, ukify 257.13 / 254.26); the inputs are regenerated here from their recipes (no binary fixtures
are checked in). The stubs the vectors were made with are pinned by sha256 in tests/vectors/pins.json,
which ``scripts/setup.sh`` also checks.

The paths of Debian inputs (``DEBIAN_KERNEL``, ``STUB_252``, ``STUB_254``, ``UKIFY_254``,
``MEASURE_252``, ``MEASURE_254``, ``MEASURE_254_LIBS``) are looked up in the set-up's lock record
when first used inside a test (:func:`conftest.locked`), never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import locked

PINS = json.loads((Path(__file__).parent / "vectors" / "pins.json").read_text())

# Lock names (teeform/inputs_lock.py INPUTS) behind the module attributes below.
LOCKED = {
    "DEBIAN_KERNEL": "kernel.vmlinuz",
    "STUB_252": "bookworm.stub",
    "STUB_254": "sd254.stub",
    "UKIFY_254": "sd254.ukify",
    "MEASURE_252": "bookworm.systemd-measure",
    "MEASURE_254": "sd254.systemd-measure",
    "MEASURE_254_LIBS": "sd254.libsystemd-shared",
}


def __getattr__(name: str) -> Path:
    """``V.STUB_252`` etc.: the path recorded in the lock (skips locally / fails in CI when absent)."""
    if name in LOCKED:
        return locked(LOCKED[name])
    raise AttributeError(name)


# sha256 of the two Debian stubs the vectors were made with (TV-2: bookworm 252.39, TV-3: backports 254.26).
STUB_252_SHA256 = PINS["bookworm.stub"]["sha256"]
STUB_254_SHA256 = PINS["sd254.stub"]["sha256"]

# ---- TV-1: systemd-measure 252.39 calculate on four tiny files.
TV1_FILES = {".linux": b"foo", ".initrd": b"bar", ".osrel": b"ID=test\n", ".cmdline": b"console=ttyS0"}
TV1 = {
    "sha256": {
        (): "98cae562789823901a82f3aabf090a0f8d5d11e1cca3e27335aa07526b1ab93e",
        ("enter-initrd",): "5992226f511f89fa235b7750e4b7261545f34ce09f74afda13475a95fb15eb64",
        ("enter-initrd", "leave-initrd"): "811e571cada0b5e9562d8cb51e8f7146c4da8540acf15a18b6a0a40f3f9a9e2b",
        ("enter-initrd", "leave-initrd", "sysinit"): "1a29ba1ce1266e55efe5aec917aeaa27c6da865856db768d02e965f082003b0d",
        ("enter-initrd", "leave-initrd", "sysinit", "ready"):
            "6f4f618465131f880faac886cb3091cc1493da3d0307450c978858b3771dae62",
    },
    "sha384": {
        (): "8e61dc3344b0b7c3ec498b621e1b50ec85755e17567a1488129055aead5f29a3bbb49873b1f8cb3dbc6de56fdc29ae3b",
        ("enter-initrd",):
            "996fea094eae9e6c1f4876f64898ad25d42f29db2d2c58713ed6e2cc1f16068ef7a5205de943162da79e78233b7522c5",
        ("enter-initrd", "leave-initrd"):
            "0f06f8cb809149dbf0f248a21517aab4a3607c917211073c4bd469f4e37a46a9b7fc849cc80c21503eff5d6b5026d055",
        ("enter-initrd", "leave-initrd", "sysinit"):
            "b5bdf5f87324bb632ec8ec6c48653f64244ef1c823817e7c0cd8af9f8b11e2b0e530a9c0585d4b372a8e626483542a27",
        ("enter-initrd", "leave-initrd", "sysinit", "ready"):
            "3ce7c91ab1ee215fdcdc320ece64c4a95b6e4837c4b6719f0d8760a90a0fa6081d2539597c0d7c604a59d4ef3f66f5d4",
    },
    "sha1": {("enter-initrd",): "12752f4b36ce35b9650497f0ecdf78fa23603f97"},
}

# ---- TV-2: ukify 257.13 + bookworm 252 stub.
TV2_UNAME = b"6.1.0-test"
TV2_FILE_SHA256 = "7064882726359ce4fda13bffc4f1101967ea59ee66c62040adcd6f290f7d9bb3"
TV2_FILE_SIZE = 147968
TV2_LAYOUT = [(".sbat", 0x19000, 308), (".osrel", 0x19200, 21), (".cmdline", 0x19400, 27),
              (".uname", 0x19600, 10), (".linux", 0x19800, 65536), (".initrd", 0x29800, 10000)]
TV2_SIZE_OF_IMAGE = 0x2C000
TV2_AUTHENTICODE = {
    "sha1": "b5e19b19ea7470c71774b052f2e60b17a6b34b0e",
    "sha256": "f93509e28f468ba47583d5209665ca9a76d285b484ab35d2eb3405bd34794f35",
    "sha384": "56033d818e7d86f5c4d248c7f2be0595abdbd7bc2458672cd193d761e6659e8eb7fc349adc1b467899c289eba8894ae2",
}
TV2_PCR11_252 = {
    "sha256": "e64a89b979f68a1bf3d616de3da4749e3bd74afce72a6f86cf60274acd4910ad",
    "sha384": "099ac418807c0d0d15d17dd1c8971784fa6115de1ef4cb22c9650ddab165eb1506764a2d3564b41a002919b931c24b89",
}
# TDX RTMR arithmetic: 48 zero bytes extended with the TV-2 Authenticode SHA-384 (hashlib).
TV2_RTMR_EXTEND_ONCE = ("aef908ce9a72938a58ee49bc2fa9da1370e8286a6320d8028e5959e34761ef16"
                        "b77de781edf38cdd3c0a6b42aa1aa82d")

# ---- TV-3: ukify 254.26 + bookworm-backports 254 stub, same inputs.
TV3_FILE_SHA256 = "d07cf12efe2d8f3e4041d38bb0591a4370432802f34a6d82be6651ed0fbcb754"
TV3_AUTHENTICODE_SHA256 = "5f14ebb3f119638774adc0696bbf2438dff8b410054a97d29bc1f17b38f7e633"
TV3_SBAT_LEN = 308
TV3_PCR11_254 = {
    "sha256": "f20e7a6dc6c7a49313683e5dc994f9a6d7fc6fba33a4a8ae01afa8ced89495a3",
    "sha384": "52ccdd20ee45c3013a521f5433c0d0a07b4270ffb013ae24a78ecf0da57b56d70aa6547f6b65ac9d509635c0c148ad9e",
}
TV3_PCR11_254_ENTER_INITRD = "e7a8f0f94dafcca9271219a779aae484b994734d1f7875d61ea85d918e72e53c"
# Published as "leaving out --sbat gives"; it is the enter-initrd phase value (see tests/vectors/README.md).
TV3_PCR11_254_WITHOUT_SBAT_ENTER_INITRD = "f572fd656fc49ee035dfcf7f87d0fa71d118e7b51c5afa49b72018a67490a5e9"


def write_tv2_inputs(d: Path) -> dict[str, Path]:
    """Write the TV-2/TV-3 input files into ``d`` (recipes in tests/vectors/README.md)."""
    files = {
        "linux": (d / "vmlinuz.bin", bytes(i % 251 for i in range(65536))),
        "initrd": (d / "initrd.bin", bytes((7 * i) % 256 for i in range(10000))),
        "osrel": (d / "os-release.txt", b"ID=test\nVERSION_ID=1\n"),
        "cmdline": (d / "cmdline.txt", b"console=ttyS0 root=/dev/vda"),
    }
    for path, content in files.values():
        path.write_bytes(content)
    return {k: p for k, (p, _) in files.items()}
