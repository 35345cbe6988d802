"""The default task environment (environments/default/) end to end: the real API, a
real runner and bubblewrap giving the task the root built from the manifest (the
tests' TASK_ROOT, as the runner image's /opt/task-root), never the host's /usr."""

from __future__ import annotations

import shutil

from devtools.task_root import npm_spec

DATA_STACK = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import requests, yaml, bs4, openpyxl

frame = pd.DataFrame({"x": np.arange(5), "y": np.arange(5) ** 2})
plt.plot(frame["x"], frame["y"])
plt.savefig("plot.png")
print(int(frame["y"].sum()), np.__version__.split(".")[0])
"""


def test_a_code_task_uses_numpy_pandas_and_matplotlib(alice):
    task = alice.run(code=DATA_STACK, timeoutSeconds=60)
    assert task["status"] == "completed", task
    assert task["result"]["exitCode"] == 0, task["result"]["stderr"]
    total, numpy_major = task["result"]["stdout"].split()
    assert total == "30" and int(numpy_major) >= 2
    files = {f["path"]: f for f in task["result"]["files"]}
    # The plot, and nothing of matplotlib's cache (MPLCONFIGDIR is under /tmp).
    assert list(files) == ["plot.png"] and files["plot.png"]["size"] > 1000


def test_git_ripgrep_jq_curl_unzip_and_node_are_there(alice):
    task = alice.run(
        language="bash",
        code="set -e\ngit init -q repo && echo found > repo/a.txt && rg -l found repo\n"
        "git --version; jq --version; curl --version | head -1; unzip -v | head -1\n"
        "node --version; npm --version",
        timeoutSeconds=60,
    )
    assert task["status"] == "completed", task
    assert task["result"]["exitCode"] == 0, task["result"]["stderr"]
    out = task["result"]["stdout"]
    for expected in ("repo/a.txt", "git version 2.", "jq-1.", "curl ", "UnZip ", "v18."):
        assert expected in out, out


# A package of the task's own, packed and installed by npm: no registry needed. In /tmp,
# with npm's cache there too, since HOME (/workspace) holds the task's output files.
NPM_INSTALL = """set -e
export npm_config_cache=/tmp/npm-cache
cd /tmp && mkdir pad app
cd pad && npm init -y >/dev/null
echo 'module.exports = (s) => s.padStart(5, ".");' > index.js
npm pack --silent >/dev/null
cd ../app && npm init -y >/dev/null
npm install --offline --no-audit --no-fund ../pad/pad-1.0.0.tgz >/dev/null
node -e 'console.log(require("pad")("ab"))'
npm --version
"""


def test_npm_is_the_manifests_pin_and_installs_a_package(alice):
    task = alice.run(language="bash", code=NPM_INSTALL, timeoutSeconds=60)
    assert task["status"] == "completed", task
    assert task["result"]["exitCode"] == 0, task["result"]["stderr"]
    # npm.txt's npm from the registry, not Debian's package (which bookworm has at 9).
    assert task["result"]["stdout"] == f"...ab\n{npm_spec().removeprefix('npm@')}\n"


def test_a_javascript_task_runs_with_node(alice):
    task = alice.run(
        language="javascript", code="console.log([1, 2, 3].map((x) => x * 2).join(','))"
    )
    assert task["status"] == "completed", task
    assert task["result"]["stdout"] == "2,4,6\n"


def test_a_tool_only_the_host_has_is_not_visible(alice):
    # mmdebstrap and bubblewrap are on the host (make system-deps), not in the manifest.
    for tool in ("mmdebstrap", "bwrap"):
        assert shutil.which(tool), f"{tool} should be on the host for this test"
    task = alice.run(
        language="bash",
        code="for t in mmdebstrap bwrap; do command -v $t && echo VISIBLE; done\n"
        "ls /usr/bin/bwrap /usr/bin/mmdebstrap 2>&1; python3 -c 'import sys; print(sys.prefix)'",
    )
    assert task["status"] == "completed", task
    out = task["result"]["stdout"]
    assert "VISIBLE" not in out
    assert out.count("No such file or directory") == 2, out
    assert out.strip().endswith("/opt/venv"), out  # the environment's venv is python3
