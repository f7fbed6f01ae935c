"""Run a command; report its wall time and the peak memory of its whole process tree.

    python benchmarks/measure_run.py actreg run studies/seed-circles.toml --no-progress

Two peaks over the command and all its descendants (joblib workers included), sampled
from /proc (Linux only): RSS every 0.2 s, PSS every second (reading it costs the kernel a
walk of every mapping, which would otherwise take CPU from the command):

* ``peak_pss_mib``: the sum of proportional set sizes (PSS). A page that n processes
  share counts 1/n in each, so the sum is the memory the tree occupies. This is the
  figure to compare with a memory budget.
* ``peak_rss_mib``: the sum of resident set sizes (RSS). Every worker maps the same
  TensorFlow libraries (about 400 MB of shared, clean pages); RSS counts them once per
  process, so this sum overstates the memory in use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def tree_memory(root: int, with_pss: bool = True) -> tuple[int, int]:
    """(RSS, PSS) in bytes of ``root`` and its descendants (PSS 0 unless ``with_pss``)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, pss, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        pss += _pss(pid) if with_pss else 0
        stack.extend(children.get(pid, []))
    return total, pss


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    peak_rss = peak_pss = 0
    tick = 0
    while proc.poll() is None:
        rss, pss = tree_memory(proc.pid, with_pss=tick % 5 == 0)
        tick += 1
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    print(json.dumps({"command": " ".join(argv), "exit": proc.returncode, "wall_seconds": round(wall, 1),
                      "peak_pss_mib": round(peak_pss / 2**20), "peak_rss_mib": round(peak_rss / 2**20)}),
          file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
