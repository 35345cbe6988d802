"""The import rules that keep the layers apart (STYLE, "What that means here" 2 and 4):

- `api` and `job_runner` never import each other: they meet only over HTTP;
- the runner holds no SDK at all: it imports the standard library and itself;
- routes never touch Firestore: only the Firestore adapter does
  (`api.adapters.firestore_store`, and the `firestore_*` modules it is made of);
- no client, and no heavy SDK, at import time.

The source is read with `ast`, so lazy imports inside functions count too."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "api"
RUNNER = ROOT / "job-runner" / "job_runner"
HEAVY_SDKS = ("google", "grpc", "anthropic")
# The modules that make up the Firestore adapter (the only ones that use the SDK).
FIRESTORE_ADAPTER = (
    "api.adapters.firestore_store",
    "api.adapters.firestore_tasks",
    "api.adapters.firestore_counters",
    "api.adapters.firestore_queues",
    "api.adapters.firestore_conversations",
    "api.adapters.firestore_secrets",
    "api.adapters.firestore_spend",
    "api.adapters.firestore_environments",
)


def sources(package: Path) -> list[Path]:
    files = sorted(package.rglob("*.py"))
    assert files, f"no Python files under {package}"
    return files


def package_of(path: Path) -> list[str]:
    """The dotted package a source file belongs to, found by its `__init__.py` files."""
    parts: list[str] = []
    directory = path.parent
    while (directory / "__init__.py").exists():
        parts.insert(0, directory.name)
        directory = directory.parent
    return parts


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file: `import a.b` gives `a.b`;
    `from a import b` gives `a` and `a.b` (b may be a module); relative imports are
    resolved against the file's package."""
    package = package_of(path)
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def violations(files: list[Path], forbidden) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in sorted(imported_modules(path))
        if forbidden(module)
    ]


def is_within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_import_scanner_sees_lazy_from_and_relative_imports(tmp_path):
    for package in ("pkg", "pkg/sub"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    module = tmp_path / "pkg" / "sub" / "mod.py"
    module.write_text(
        "import os.path\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "def later():\n"
        "    from google.cloud import firestore\n"
    )
    assert imported_modules(module) == {
        "os.path",
        "pkg.sub",
        "pkg.sub.sibling",
        "pkg.other",
        "pkg.other.thing",
        "google.cloud",
        "google.cloud.firestore",
    }


def test_import_scanner_resolves_the_runner_package():
    assert package_of(RUNNER / "main.py") == ["job_runner"]
    assert package_of(API / "routes" / "tasks.py") == ["api", "routes"]


def test_api_never_imports_the_job_runner():
    assert violations(sources(API), lambda m: is_within(m, "job_runner")) == []


def test_job_runner_never_imports_the_api_flask_or_google():
    forbidden = ("api", "flask", "werkzeug", "google")
    assert violations(sources(RUNNER), lambda m: is_within(m, *forbidden)) == []


def test_job_runner_imports_only_the_standard_library_and_itself():
    """One exception: agent_task.py talks to Claude through the official `anthropic`
    SDK, imported inside a function, so the code-task path (whose start-up is
    measured) never pays the SDK's ~0.3 s import."""

    def outside(module: str) -> bool:
        top = module.split(".")[0]
        return top not in sys.stdlib_module_names and top != "job_runner"

    agent_task = RUNNER / "agent_task.py"
    others = [path for path in sources(RUNNER) if path != agent_task]
    assert violations(others, outside) == []
    sdk_allowed = violations([agent_task], lambda m: outside(m) and not is_within(m, "anthropic"))
    assert sdk_allowed == []

    def module_level_imports(node: ast.AST) -> list[str]:
        found = []
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue  # lazy: runs only when the function is called
            if isinstance(child, ast.Import):
                found += [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                found.append(child.module or "")
            found += module_level_imports(child)
        return found

    tree = ast.parse(agent_task.read_text(), str(agent_task))
    assert [m for m in module_level_imports(tree) if is_within(m, "anthropic")] == []


def test_routes_never_touch_firestore_directly():
    routes = sources(API / "routes")
    forbidden = ("google.cloud", *FIRESTORE_ADAPTER)
    assert violations(routes, lambda m: is_within(m, *forbidden)) == []


def test_services_speak_store_verbs_not_paths_or_transaction_shapes():
    """Only the state machine (and the writes it gathers for a settling transaction,
    conversation_turns.py) names Firestore paths or builds a transaction's Change
    (admission takes only `utc_day`, the day its shards are named by); every other
    service calls the store's verbs."""
    allowed = {"state_machine.py", "conversation_turns.py", "admission.py"}
    services = [p for p in sources(API / "services") if p.name not in allowed]
    shapes = (
        "api.adapters.firestore_paths",
        *(f"api.adapters.firestore_store.{name}" for name in ("Change", "Reader", "Mutation")),
    )
    assert violations(services, lambda m: is_within(m, *shapes)) == []


def test_only_the_firestore_adapter_imports_the_firestore_sdk():
    adapter = {API / "adapters" / f"{name.rsplit('.', 1)[1]}.py" for name in FIRESTORE_ADAPTER}
    others = [p for p in sources(API) if p not in adapter]
    assert violations(others, lambda m: is_within(m, "google.cloud.firestore")) == []
    assert violations(others, lambda m: m.startswith("google.cloud.firestore_v1")) == []


@pytest.mark.parametrize("package", [API, RUNNER], ids=["api", "job_runner"])
def test_no_module_builds_a_client_at_import_time(package):
    """A call to anything named `...Client` in a module's top-level code (outside any
    function or class) would build a client on import."""
    found = []
    for path in sources(package):
        tree = ast.parse(path.read_text(), str(path))
        top_level = [
            node
            for node in tree.body
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        for statement in top_level:
            for node in ast.walk(statement):
                if isinstance(node, ast.Call):
                    name = ast.unparse(node.func)
                    if name.split(".")[-1].endswith("Client"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}")
    assert found == []


def run_clean(code: str) -> str:
    """Run `code` in a fresh interpreter (nothing imported yet) and return its stdout."""
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_importing_the_api_and_its_task_routes_does_not_import_firestore():
    code = "import api, api.routes.tasks, sys; print('google.cloud.firestore' in sys.modules)"
    assert run_clean(code) == "False"


def test_importing_every_api_module_loads_no_heavy_sdk():
    # api.wsgi is the one module that builds the app on import, by design.
    code = f"""
import importlib, json, pkgutil, sys
import api
for info in pkgutil.walk_packages(api.__path__, "api."):
    if info.name != "api.wsgi":
        importlib.import_module(info.name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY_SDKS!r})
print(json.dumps(heavy))
"""
    assert json.loads(run_clean(code)) == []


def test_importing_every_job_runner_module_loads_only_the_standard_library():
    code = """
import importlib, json, pkgutil, sys
before = set(sys.modules)
import job_runner
for info in pkgutil.walk_packages(job_runner.__path__, "job_runner."):
    if info.name != "job_runner.__main__":
        importlib.import_module(info.name)
loaded = {m.split(".")[0] for m in set(sys.modules) - before}
print(json.dumps(sorted(loaded - set(sys.stdlib_module_names) - {"job_runner"})))
"""
    assert json.loads(run_clean(code)) == []
