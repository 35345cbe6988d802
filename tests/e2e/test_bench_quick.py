"""Every benchmark in bench/ still runs: each script in its quick mode (a handful of
iterations) exits 0 and prints its figures, so a benchmark cannot rot unseen.

The scripts use this session's emulators (devtools/local_stack.py takes the ones the
environment names) instead of starting a Firestore emulator each."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPTS = sorted(path.name for path in (ROOT / "bench").glob("*.py"))
# A figure: a number with its unit, as every benchmark prints them.
FIGURE = re.compile(r"\d+(\.\d+)? ?(ms|s|MiB/s|tasks/s|/s|x)\b")
QUICK_DEADLINE_SECONDS = 240  # generous: a loaded 2-core machine is several times slower


def test_every_benchmark_is_covered():
    assert len(SCRIPTS) >= 5, SCRIPTS


@pytest.mark.timeout(QUICK_DEADLINE_SECONDS + 30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_runs_in_quick_mode_and_prints_its_figures(script, emulator, storage_emulator):
    env = {
        **os.environ,
        "FIRESTORE_EMULATOR_HOST": emulator.host,
        "STORAGE_EMULATOR_HOST": storage_emulator.url,
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=QUICK_DEADLINE_SECONDS,
    )
    assert run.returncode == 0, f"{script} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    figures = [line for line in run.stdout.splitlines() if FIGURE.search(line)]
    assert len(figures) >= 2, f"{script} printed no figures:\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
