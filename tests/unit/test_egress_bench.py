"""`bench/egress_proxy.py --quick` runs (a benchmark that is not run rots): a real
sandboxed task makes HTTPS requests through the proxy, and the numbers come out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_egress_bench_runs_in_quick_mode():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "egress_proxy.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "20 HTTPS requests" in done.stdout
    p50s = [float(value) for value in re.findall(r"p50\s+([\d.]+) ms  p90", done.stdout)]
    assert len(p50s) == 2 and all(value > 0 for value in p50s)
    growth = re.search(r"\(([+-][\d.]+) MiB\)", done.stdout)
    assert growth is not None and abs(float(growth.group(1))) < 16, done.stdout
