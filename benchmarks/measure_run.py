"""Run a command; report its wall time and the peak memory of its whole process tree.

    python benchmarks/measure_run.py actreg run studies/seed-circles.toml --no-progress

Peak memory is the largest sum of resident set sizes (RSS) over the command and all
its descendants (joblib workers included), sampled every 0.2 s from /proc (Linux only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and its descendants."""
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
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    print(json.dumps({"command": " ".join(argv), "exit": proc.returncode, "wall_seconds": round(wall, 1),
                      "peak_rss_mib": round(peak / 2**20)}), file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
