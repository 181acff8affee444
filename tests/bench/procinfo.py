"""Memory and CPU of a process tree, read from /proc: what a contender costs while it serves.

A contender is one process (spfpolicy, the DUNNO floor) or an acceptor with a child per
connection (policyd-spf under spawn): its cost is the sum over the tree.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KIB = 1024
MIB = 1024 * KIB


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now."""
    tree = [pid]
    index = 0
    while index < len(tree):
        tree += _children(tree[index])
        index += 1
    return tree


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return children  # gone meanwhile
    for task in tasks:
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


@dataclass(frozen=True)
class Memory:
    """Resident memory summed over a tree, in bytes: now, and each process's own peak."""

    rss: int  # VmRSS
    hwm: int  # VmHWM: a sum of peaks reached at different moments, so an upper bound
    processes: int


def tree_memory(pid: int) -> Memory:
    """Memory of `pid` and its descendants."""
    rss = hwm = count = 0
    for member in process_tree(pid):
        fields = _status(member)
        if fields:
            rss += fields.get("VmRSS", 0)
            hwm += fields.get("VmHWM", 0)
            count += 1
    return Memory(rss, hwm, count)


def _status(pid: int) -> dict[str, int]:
    """The memory lines of /proc/PID/status, in bytes; empty if the process is gone."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * KIB
    return fields


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds used by a tree so far, in user space and in the kernel."""

    user: float
    system: float

    @property
    def total(self) -> float:
        """User plus system seconds."""
        return self.user + self.system

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


def tree_cpu(pid: int) -> CpuTimes:
    """CPU used so far by `pid` and its live descendants (a child that exited is not counted)."""
    user = system = 0
    for member in process_tree(pid):
        try:
            stat = (PROC / str(member) / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may contain spaces.
        fields = stat.rpartition(")")[2].split()
        user += int(fields[11])  # utime (proc(5) field 14)
        system += int(fields[12])  # stime (field 15)
    return CpuTimes(user / CLOCK_TICKS, system / CLOCK_TICKS)


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have spent not idle since boot (/proc/stat).

    Compared with what the contender and the driver used over the same span, it shows how
    much went elsewhere: the DNS servers, the runner, and anything else running meanwhile.
    """
    fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class MemorySampler:
    """Samples a tree's memory in a thread; `peak_rss` is the largest sum seen."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        """Sample `pid`'s tree every `interval` seconds between start() and stop()."""
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> MemorySampler:
        """Begin sampling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop."""
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        memory = tree_memory(self.pid)
        self.peak_rss = max(self.peak_rss, memory.rss)
        self.peak_processes = max(self.peak_processes, memory.processes)
