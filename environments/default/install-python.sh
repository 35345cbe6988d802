#!/bin/sh
# Runs inside the task root (as its /), offline: the default environment's Python
# packages into the venv every task's PATH starts with. WHEELS holds the wheels the
# lock names, fetched outside with the machine's CA bundle and pip configuration
# (only those reach the package index here, see issue 23), and pip checks each
# against the lock's hashes.
#   install-python.sh WHEELS LOCK
set -eu
wheels=$1
lock=$2
python3 -m venv /opt/venv
/opt/venv/bin/pip install --quiet --no-index --find-links "$wheels" --no-deps \
    --require-hashes --no-compile -r "$lock"
# Byte-compiled once here: the root is read-only to tasks, which then import fast.
/opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib >/dev/null
