"""The model process's heap: the breakdown reads this process, the idle trimmer trims once per idle period."""

from __future__ import annotations

import time
from pathlib import Path

from ds_triton import heap
from ds_triton.heap import IdleTrimmer, MemoryBreakdown
from ds_triton.server_process.procfs import read_status


def wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_breakdown_adds_up_and_sees_the_allocator() -> None:
    memory = heap.breakdown()
    assert memory.rss > 0 and memory.peak_rss >= memory.rss
    assert abs(memory.anon + memory.file + memory.shmem - memory.rss) < 2  # MB, kernel rounding
    assert memory.malloc_in_use is not None and memory.malloc_in_use > 0  # glibc on this machine
    assert "rss" in memory.summary() and "malloc in use" in memory.summary()


def test_freed_heap_comes_back_after_trim() -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    heap.trim()
    before = heap.breakdown().anon
    # 64 MB in 64 KB blocks (below any mmap threshold), each followed by a small block
    # that stays: freeing the big ones leaves holes that only a full trim can release.
    blocks, pins = [], []
    for _ in range(1024):
        blocks.append(libc.malloc(64 * 1024))
        ctypes.memset(blocks[-1], 1, 64 * 1024)
        pins.append(libc.malloc(4096))  # above the tcache sizes: taken from the top, after the block
    for block in blocks:
        libc.free(block)
    held = heap.breakdown().anon
    assert heap.trim()
    after = heap.breakdown().anon
    for pin in pins:
        libc.free(pin)
    assert held - before > 48 and after - before < 16, (before, held, after)


def test_idle_trimmer_trims_once_per_idle_period_and_never_while_busy() -> None:
    trims: list[float] = []
    reports: list[tuple[MemoryBreakdown, MemoryBreakdown]] = []

    def fake_trim() -> bool:
        trims.append(time.monotonic())
        return True

    trimmer = IdleTrimmer(0.2, trim_heap=fake_trim, on_trim=lambda b, a: reports.append((b, a)))
    try:
        time.sleep(0.5)
        assert trims == []  # no work yet, nothing to give back
        trimmer.busy()
        time.sleep(0.5)
        assert trims == []  # busy: never trims under an execute
        trimmer.idle()
        idle_at = time.monotonic()
        assert wait_for(lambda: len(trims) == 1)
        assert trims[0] - idle_at >= 0.19
        time.sleep(0.5)
        assert len(trims) == 1  # once per idle period
        trimmer.busy()
        trimmer.idle()
        # The report follows the trim (it measures memory after it): wait for both.
        assert wait_for(lambda: len(trims) == 2 and len(reports) == 2)
        assert trimmer.trims == 2
    finally:
        trimmer.stop()


def test_a_failing_trim_keeps_the_trimmer_alive() -> None:
    calls: list[int] = []

    def broken() -> bool:
        calls.append(1)
        raise OSError("no")

    trimmer = IdleTrimmer(0.05, trim_heap=broken)
    try:
        for _ in range(2):
            trimmer.busy()
            trimmer.idle()
            count = len(calls)
            assert wait_for(lambda count=count: len(calls) == count + 1)
    finally:
        trimmer.stop()


def test_read_status_keeps_the_byte_valued_lines(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "status").write_text("Name:\tstub\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\nThreads:\t3\n")
    assert read_status(7, proc=tmp_path) == {"VmHWM": 2 * 1024 * 1024, "VmRSS": 1024 * 1024}
