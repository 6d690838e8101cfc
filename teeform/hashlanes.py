"""Run streaming hash updates on worker threads, so several digests of one stream use several cores.

Why threads work here: CPython's ``hashlib`` releases the GIL while it hashes a buffer longer than
2047 bytes (``Modules/hashlib.h`` ``HASHLIB_GIL_MINSIZE``), and :func:`crc32` (ISA-L's
``isal.isal_zlib.crc32``, or ``zlib.crc32``) releases it too (``zlib.crc32`` for buffers over 5 KiB,
``Modules/zlibmodule.c``). So the SHA-384 of a PCR and the SHA-256 of a file
can run on two cores while the main thread keeps reading and writing.

A :class:`HashLanes` has ``n`` lanes; each lane is one worker thread that runs the calls submitted
to it in submission order (so a hasher that is only ever fed through one lane sees its chunks in
order). At most ``max_pending`` calls per lane are queued; :meth:`HashLanes.submit` blocks beyond
that, which bounds memory to about ``n * max_pending`` chunks (8 MiB per lane with 1 MiB chunks).
The chunks passed must not be mutated afterwards (pass ``bytes``, not a reused ``bytearray``).

With one CPU (``os.cpu_count() == 1``) or ``lanes=0`` every call runs inline on the caller's thread.
"""

from __future__ import annotations

import collections
import os
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["Crc32", "HashLanes", "crc32", "default_lanes"]

try:  # python-isal (pycompression/python-isal, Intel ISA-L): the same CRC-32, about 10x faster
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - a platform without its wheel: zlib's, same values
    _crc32 = zlib.crc32


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32/ISO-HDLC (the CRC of zlib, gzip and PNG: reflected polynomial 0xEDB88320, initial and
    final XOR 0xFFFFFFFF) of ``data``, continuing from ``value``; returns an unsigned 32-bit int.

    Computed by ISA-L (``isal.isal_zlib.crc32``, which releases the GIL and uses carry-less
    multiplication) where python-isal is installed, else by ``zlib.crc32``; both give the same
    values (``tests/test_datapath.py::test_crc32_is_zlibs_crc`` checks them against each other and the CRC catalogue's
    check value 0xCBF43926 for b"123456789").
    """
    return _crc32(data, value) & 0xFFFFFFFF


def default_lanes() -> int:
    """Worker lanes to use: 2 on a machine with at least 2 CPUs, else 0 (inline)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 0


class Crc32:
    """A running CRC-32/ISO-HDLC (:func:`crc32`) with a hashlib-like :meth:`update`."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def update(self, data: bytes) -> None:
        """Continue the CRC over ``data``."""
        self.value = _crc32(data, self.value)


class HashLanes:
    """``n`` ordered worker lanes (see the module docstring). Use as a context manager or call :meth:`close`."""

    def __init__(self, lanes: int | None = None, *, max_pending: int = 8) -> None:
        self.lanes = default_lanes() if lanes is None else lanes
        self._max = max(1, max_pending)
        self._pools = [ThreadPoolExecutor(max_workers=1, thread_name_prefix="teeform-hash") for _ in range(self.lanes)]
        self._pending: list[collections.deque[Future[Any]]] = [collections.deque() for _ in range(self.lanes)]

    def __enter__(self) -> HashLanes:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close(wait_errors=False)

    def submit(self, lane: int, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on lane ``lane % n`` after everything submitted to that lane before.

        Raises:
            Exception: whatever an earlier call on that lane raised (re-raised here or in :meth:`wait`).
        """
        if not self.lanes:
            fn(*args)
            return
        i = lane % self.lanes
        q = self._pending[i]
        while len(q) >= self._max:
            q.popleft().result()
        q.append(self._pools[i].submit(fn, *args))

    def update_all(self, lane: int, hashers: tuple[Any, ...], data: bytes) -> None:
        """Submit ``h.update(data)`` for every ``h`` in ``hashers`` as one call on ``lane``."""
        if hashers:
            self.submit(lane, _update_all, hashers, data)

    def wait(self) -> None:
        """Block until every submitted call has run; re-raise the first error."""
        for q in self._pending:
            while q:
                q.popleft().result()

    def close(self, *, wait_errors: bool = True) -> None:
        """Wait for all calls (re-raising errors unless ``wait_errors`` is False) and stop the threads."""
        try:
            if wait_errors:
                self.wait()
        finally:
            for q in self._pending:
                q.clear()
            for p in self._pools:
                p.shutdown(wait=True, cancel_futures=True)
            self._pools = []
            self.lanes = 0


def _update_all(hashers: tuple[Any, ...], data: bytes) -> None:
    for h in hashers:
        h.update(data)
