"""The default task environment as a local root filesystem: what `make dev` and
`make test` give the sandbox as `/` (TASK_ROOT), the same manifest the runner image
installs at /opt/task-root (environments/default/, job-runner/Dockerfile).

Built once per manifest with Debian's mmdebstrap (--variant=minbase, bookworm: the
image's base) and cached under .cache/task-root/<manifest hash>/; a new manifest
builds a new root and removes the old ones. npm is the npm registry's (npm.txt), not
Debian's package, fetched by the machine's npm. A fresh machine takes a few minutes
(README); a cached root is a directory check.

    python -m devtools.task_root        # builds if needed, prints the root's path
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST_DIR = REPO / "environments" / "default"
CACHE_DIR = REPO / ".cache" / "task-root"
SUITE = "bookworm"
# As the Debian slim images do (and so the runner image's root): no manuals, no
# documentation but the licences, no translations. They are most of a root's size.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
)
# Merged /usr set up by mmdebstrap itself, without Debian's usrmerge package (and the
# Perl modules it pulls in), which the runner image's root does not have either.
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
WHEEL_PLATFORM = ("--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64")


def manifest_files() -> list[Path]:
    return sorted(path for path in MANIFEST_DIR.iterdir() if path.is_file())


def manifest_hash() -> str:
    """sha256 over the manifest's files (names and contents): the manifest's identity."""
    digest = hashlib.sha256()
    for path in manifest_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_key() -> str:
    """The manifest's hash and how this script builds it: a change to either rebuilds."""
    recipe = "\0".join([manifest_hash(), SUITE, *DPKG_EXCLUDES, *WHEEL_PLATFORM, MERGED_USR_HOOK])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def debian_packages() -> list[str]:
    lines = (MANIFEST_DIR / "debian.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ensure_task_root(log=print) -> Path:
    """The cached root for the current manifest, built first if missing."""
    key = cache_key()
    root = CACHE_DIR / key / "root"
    if (CACHE_DIR / key / "complete").exists():
        return root
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # One build at a time (a test session and `make dev` may both start one).
    with open(CACHE_DIR.parent / "task-root.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (CACHE_DIR / key / "complete").exists():
            return root
        shutil.rmtree(CACHE_DIR / key, ignore_errors=True)  # a broken build's leftovers
        log(f"building the task root for manifest {manifest_hash()} (once; a few minutes)")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="task-root-downloads-") as downloads:
            wheels, npm = Path(downloads) / "wheels", Path(downloads) / "npm"
            _download_wheels(wheels)
            _mmdebstrap(root, wheels, _pack_npm(npm))
        (CACHE_DIR / key / "complete").write_text(key + "\n")
        log(f"built the task root in {time.monotonic() - started:.0f} s: {root}")
        for stale in CACHE_DIR.iterdir():  # an older manifest's (or recipe's) root
            if stale.name != key:
                shutil.rmtree(stale, ignore_errors=True)
    return root


def _download_wheels(into: Path) -> None:
    """The lock's wheels, fetched by the machine's own pip: its CA bundle and pip
    configuration are what reach the package index from here, which Debian's bundle
    inside the root may not (issue 23). Hashes are checked here and again inside."""
    command = [sys.executable, "-m", "pip"]
    if subprocess.run([*command, "--version"], capture_output=True).returncode != 0:
        command = ["python3", "-m", "pip"]
    command += ["download", "--quiet", "--no-deps", "--only-binary=:all:", *WHEEL_PLATFORM]
    command += ["--python-version", "3.11", "--implementation", "cp", "--require-hashes"]
    command += ["-r", str(MANIFEST_DIR / "python.lock"), "-d", str(into)]
    subprocess.run(command, check=True)


def npm_spec() -> str:
    """npm.txt's `npm@VERSION` (its integrity is install-npm.sh's to check)."""
    lines = (MANIFEST_DIR / "npm.txt").read_text().splitlines()
    (pin,) = [line for line in lines if line.strip() and not line.startswith("#")]
    return pin.split()[0]


def _pack_npm(into: Path) -> Path:
    """The registry's tarball of npm.txt's npm, fetched by the machine's npm (its
    registry configuration, as pip's for the wheels); install-npm.sh checks it against
    npm.txt's integrity inside the root."""
    into.mkdir()
    done = subprocess.run(
        ["npm", "pack", "--silent", npm_spec()],
        cwd=into,
        check=True,
        capture_output=True,
        text=True,
    )
    return into / done.stdout.strip().splitlines()[-1]


def _mmdebstrap(root: Path, wheels: Path, npm_tarball: Path) -> None:
    setup = "/tmp/environment-setup"
    inputs = " ".join(
        f"{MANIFEST_DIR}/{name}"
        for name in ("python.lock", "install-python.sh", "npm.txt", "install-npm.sh")
    )
    hooks = [
        f'mkdir -p "$1"{setup}',
        f"copy-in {wheels} {npm_tarball} {inputs} {setup}",
        f'chroot "$1" /bin/sh {setup}/install-python.sh {setup}/{wheels.name} {setup}/python.lock',
        f'chroot "$1" /bin/sh {setup}/install-npm.sh {setup}/{npm_tarball.name} {setup}/npm.txt',
        f'rm -rf "$1"{setup}',
        # Mount points for the host's files that a task with network gets (sandbox.py).
        'touch "$1"/etc/resolv.conf "$1"/etc/hosts',
    ]
    command = ["mmdebstrap", "--variant=minbase", "--quiet", f"--hook-dir={MERGED_USR_HOOK}"]
    command += [f"--dpkgopt={option}" for option in DPKG_EXCLUDES]
    command += ["--include=" + ",".join(debian_packages())]
    command += [f"--customize-hook={hook}" for hook in hooks]
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*command, SUITE, str(root)], check=True)


def main() -> int:
    for tool in ("mmdebstrap", "npm"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed for the task root: apt-get install {tool}", file=sys.stderr)
            return 1
    root = ensure_task_root(log=lambda message: print(message, file=sys.stderr))
    print(os.fspath(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
