"""Where a model process's memory goes, and giving freed heap back to the system.

A Python-backend stub serves a burst of large batches, frees the activations,
and still holds the pages: glibc keeps freed chunks in its arenas (and, after
the first large ``free``, raises its mmap threshold to that size, up to 32 MB, so later
activations of that size come from the heap too). RSS then stays at the
high-water mark of the biggest burst. ``malloc_trim(0)`` walks every arena and
returns the free pages in the middle of the heaps as well as at their top;
``IdleTrimmer`` calls it once whenever an instance has been idle for a moment,
so memory comes back after a burst without slowing the burst itself.

``breakdown()`` splits the process's RSS into what the kernel reports
(anonymous, file-backed libraries, shared memory) and what the allocator
reports (in use, free chunks, mmapped chunks), for logs and tests.
Linux + glibc only; elsewhere the allocator figures are absent and trimming
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ds_triton.server_process.procfs import read_status

LOG = logging.getLogger(__name__)

MB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # ctypes layout, see mallinfo2(3)
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes the main and thread arenas hold from the system (sbrk + heaps)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in chunks mmapped one by one (above the mmap threshold)
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use by the program
            "fordblks",  # bytes in free chunks (their pages may have been returned by a trim)
            "keepcost",  # of which at the top of the main heap (trimmed by any free)
        )
    ]


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl, macOS) or older than 2.33
        return None
    return libc


_LIBC = _load_libc()
_M_MMAP_THRESHOLD = -3  # malloc.h


@dataclass(frozen=True)
class MemoryBreakdown:
    """One process's memory, in MB.

    ``rss = anon + file + shmem`` (kernel). Of the anonymous part, the heap
    (``malloc_in_use`` plus ``malloc_free``, the free chunks) and
    ``malloc_mmapped`` come from glibc. A trim returns the pages inside free
    chunks but glibc still counts the chunks as free, so after a trim
    ``malloc_free`` overstates what is resident: ``anon`` says what is.
    ``python_traced`` is what Python's allocators hand out (objects, buffers)
    when ``tracemalloc`` runs (``PYTHONTRACEMALLOC=1``), else None; it overlaps
    ``malloc_in_use``.
    """

    rss: float
    peak_rss: float
    anon: float
    file: float
    shmem: float
    malloc_in_use: float | None
    malloc_free: float | None
    malloc_mmapped: float | None
    python_traced: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {k: None if v is None else round(v, 1) for k, v in asdict(self).items()}

    def summary(self) -> str:
        text = f"rss {self.rss:.0f} MB (anon {self.anon:.0f}, file {self.file:.0f}, shm {self.shmem:.0f})"
        if self.malloc_in_use is not None:
            text += (
                f"; malloc in use {self.malloc_in_use:.0f}, free chunks {self.malloc_free:.0f}, "
                f"mmapped {self.malloc_mmapped:.0f}"
            )
        if self.python_traced is not None:
            text += f"; python objects {self.python_traced:.0f}"
        return text


def breakdown() -> MemoryBreakdown:
    """This process's memory now."""
    status = {key: value / MB for key, value in read_status().items()}
    in_use = free = mmapped = None
    if _LIBC is not None:
        info = _LIBC.mallinfo2()
        in_use, free, mmapped = info.uordblks / MB, info.fordblks / MB, info.hblkhd / MB
    traced = tracemalloc.get_traced_memory()[0] / MB if tracemalloc.is_tracing() else None
    return MemoryBreakdown(
        rss=status.get("VmRSS", 0.0),
        peak_rss=status.get("VmHWM", 0.0),
        anon=status.get("RssAnon", 0.0),
        file=status.get("RssFile", 0.0),
        shmem=status.get("RssShmem", 0.0),
        malloc_in_use=in_use,
        malloc_free=free,
        malloc_mmapped=mmapped,
        python_traced=traced,
    )


def fix_mmap_threshold(size_bytes: int) -> bool:
    """Serve every allocation of ``size_bytes`` or more with its own mmap, returned on free.

    Setting the threshold also turns off glibc's dynamic threshold, which would
    otherwise rise to 32 MB after the first large free and keep later
    activations on the heap for good, where they fragment it: with MiniLM, a
    burst of maximum-length batches peaked about 80 MB lower with a 1 MB
    threshold (``perf/repro/heap_after_burst.py``). The price is the page
    faults of a fresh mapping per large tensor, one per 4 KB written.
    """
    return bool(_LIBC is not None and _LIBC.mallopt(_M_MMAP_THRESHOLD, size_bytes))


def trim() -> bool:
    """Give the allocator's free pages back to the system; True if any were released."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0))


class IdleTrimmer:
    """Trims the heap once each time its owner has been idle for ``idle_seconds``.

    The owner calls ``busy()`` when work starts and ``idle()`` when it ends;
    a background thread trims after the owner has stayed idle long enough, at
    most once per idle period, so a burst is never slowed and memory comes back
    soon after it. ``stop()`` joins the thread.
    """

    def __init__(
        self,
        idle_seconds: float = 1.0,
        trim_heap: Callable[[], bool] = trim,
        on_trim: Callable[[MemoryBreakdown, MemoryBreakdown], None] | None = None,
    ) -> None:
        self._idle_seconds = idle_seconds
        self._trim_heap = trim_heap
        self._on_trim = on_trim
        self._lock = threading.Lock()
        self._busy = 0
        self._last_active = time.monotonic()
        self._dirty = False  # work happened since the last trim
        self._wake = threading.Event()
        self._stopped = False
        self.trims = 0
        self._thread = threading.Thread(target=self._run, name="idle-heap-trimmer", daemon=True)
        self._thread.start()

    def busy(self) -> None:
        with self._lock:
            self._busy += 1
            self._dirty = True

    def idle(self) -> None:
        with self._lock:
            self._busy = max(0, self._busy - 1)
            self._last_active = time.monotonic()
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join()

    def _due_in(self) -> float | None:
        """Seconds until a trim is due, 0 if due now, None if nothing to do."""
        with self._lock:
            if not self._dirty or self._busy:
                return None
            return max(0.0, self._last_active + self._idle_seconds - time.monotonic())

    def _run(self) -> None:
        while not self._stopped:
            due = self._due_in()
            if due is None:
                self._wake.wait()
                self._wake.clear()
                continue
            if due > 0:
                self._wake.wait(due)
                self._wake.clear()
                continue
            with self._lock:
                self._dirty = False
            try:
                before = breakdown()
                self._trim_heap()
                self.trims += 1
                if self._on_trim is not None:
                    self._on_trim(before, breakdown())
            except Exception:  # trimming is best effort; serving goes on without it
                LOG.exception("heap trim failed")
