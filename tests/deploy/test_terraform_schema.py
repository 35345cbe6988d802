"""terraform/ against the Google provider's own schema: every resource and data source
type, argument and nested block must exist in the provider version terraform/ pins.

The schema comes from the npm package @cdktf/provider-google (its .jsii describes every
resource's arguments and blocks, generated from the provider), installed from
tests/deploy/provider-schema/package-lock.json into a git-ignored node_modules by
`npm ci` (`make test` does it; so does this module when it is missing). Where a
terraform binary exists, `terraform fmt -check` runs too; where not, it says so."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.harness import ROOT

TERRAFORM = ROOT / "terraform"
SCHEMA_DIR = Path(__file__).with_name("provider-schema")
PACKAGE = SCHEMA_DIR / "node_modules" / "@cdktf" / "provider-google"
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
META_BLOCKS = {"lifecycle", "provisioner", "connection"}
DOC = re.compile(r"/docs/(resources|data-sources)/(\w+)#(\w+) ")


def install_schema() -> Path:
    if not (PACKAGE / ".jsii").exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed once to fetch @cdktf/provider-google: install Node.js (npm)"
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--omit=peer"],
            cwd=SCHEMA_DIR,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return PACKAGE / ".jsii"


def _struct_of(type_ref: dict) -> str | None:
    """The struct (nested block) a property's type names, if it is one."""
    if "fqn" in type_ref:
        return None if type_ref["fqn"].startswith("cdktf.") else type_ref["fqn"]
    if "collection" in type_ref:
        return _struct_of(type_ref["collection"]["elementtype"])
    for option in type_ref.get("union", {}).get("types", []):
        found = _struct_of(option)
        if found:
            return found
    return None


def _docs(prop: dict) -> str:
    """Where the registry link with the argument's own name is: summary or remarks."""
    docs = prop.get("docs", {})
    return docs.get("summary", "") + " " + docs.get("remarks", "")


@pytest.fixture(scope="module")
def schema() -> dict:
    """{("resource"|"data", type): fqn of its Config} and {fqn: {name: block fqn or None}}."""
    types = json.loads(install_schema().read_text())["types"]
    structs: dict[str, dict[str, str | None]] = {}
    for fqn, body in types.items():
        if body.get("datatype"):
            fields = {}
            for prop in body.get("properties", []):
                found = DOC.search(_docs(prop))
                if found:
                    fields[found.group(3)] = _struct_of(prop["type"])
            structs[fqn] = fields
    tops = {}
    for fqn, body in types.items():
        base = body.get("base")
        if base in ("cdktf.TerraformResource", "cdktf.TerraformDataSource"):
            config = f"{fqn}Config"
            remarks = [_docs(p) for p in types[config].get("properties", [])]
            found = next((DOC.search(r) for r in remarks if DOC.search(r)), None)
            if found is None:
                continue
            kind, name = found.group(1), found.group(2)
            tops[("resource" if kind == "resources" else "data", f"google_{name}")] = config
    return {"tops": tops, "structs": structs}


def walk(text: str, file: str):
    """Yields (file:line, context, kind, name): kind is "top", "attribute" or "block";
    context is the path of blocks it is in. For terraform-fmt'ed files."""
    stack: list[str] = []
    depth_skip = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{file}:{number}"
        if depth_skip:
            depth_skip += line.count("{") + line.count("[") - line.count("}") - line.count("]")
            continue
        if not line or line.startswith(("#", "//")):
            continue
        if line == "}":
            stack.pop()
            continue
        empty = re.fullmatch(r"(\w+) \{\}", line)
        if empty:
            yield where, tuple(stack), "block", empty.group(1)
            continue
        top = re.fullmatch(r'(resource|data) "(\w+)" "(\w+)" \{', line)
        if top:
            yield where, tuple(stack), "top", (top.group(1), top.group(2))
            stack.append(f"{top.group(1)}:{top.group(2)}")
            continue
        dynamic = re.fullmatch(r'dynamic "(\w+)" \{', line)
        block = re.fullmatch(r"(\w+) \{", line) or re.fullmatch(r'(\w+)(?: "[^"]*")* \{', line)
        if opened := dynamic or block:
            name = opened.group(1)
            if dynamic:
                yield where, tuple(stack), "block", name
                stack.append(f"dynamic:{name}")
            elif stack and stack[-1].startswith("dynamic:") and name == "content":
                stack.append("content")
            else:
                yield where, tuple(stack), "block", name
                stack.append(name)
            continue
        attribute = re.fullmatch(r"(\w+)\s*=\s*(.*)", line)
        if attribute:
            yield where, tuple(stack), "attribute", attribute.group(1)
            value = attribute.group(2)
            depth_skip = value.count("{") + value.count("[") - value.count("}") - value.count("]")
            continue
        raise AssertionError(f"{where}: cannot read {line!r} (is it terraform fmt'ed?)")


def check(schema: dict, path: Path) -> list[str]:
    problems = []
    for where, context, kind, name in walk(path.read_text(), path.name):
        if kind == "top":
            if name not in schema["tops"]:
                problems.append(f"{where}: no {name[0]} type {name[1]} in the provider")
            continue
        if not context or not context[0].startswith(("resource:", "data:")):
            continue  # variable, output, locals, terraform, provider blocks
        top_kind, top_type = context[0].split(":")
        struct = schema["tops"].get((top_kind, top_type))
        inner = [c for c in context[1:] if c != "content"]
        if struct is None or any(c in META_BLOCKS for c in inner):
            continue
        if not inner and (name in META_ARGUMENTS or name in META_BLOCKS):
            continue
        if inner and inner[-1].startswith("dynamic:") and name in ("for_each", "iterator"):
            continue
        for block in inner:
            struct = schema["structs"][struct].get(block.removeprefix("dynamic:"))
            if struct is None:
                break
        fields = schema["structs"].get(struct, {})
        if name not in fields:
            problems.append(f"{where}: {top_type} has no {kind} {'.'.join([*inner, name])}")
        elif (fields[name] is not None) != (kind == "block"):
            problems.append(f"{where}: {name} in {top_type} is not a {kind}")
    return problems


def test_every_resource_argument_and_block_exists_in_the_pinned_provider(schema):
    files = sorted(TERRAFORM.glob("*.tf"))
    problems = [p for path in files for p in check(schema, path)]
    assert problems == []
    tops = [
        n for path in files for _, _, kind, n in walk(path.read_text(), path.name) if kind == "top"
    ]
    assert len(tops) > 30, "the walker read almost nothing"


def test_a_name_the_provider_does_not_have_is_found(schema, tmp_path):
    wrong = tmp_path / "wrong.tf"
    wrong.write_text(
        'resource "google_cloud_run_v2_job" "x" {\n  name = "x"\n  templates {\n  }\n'
        "  template {\n    task_count = 1\n    template {\n      containers {\n"
        '        imagee = "x"\n      }\n    }\n  }\n}\n'
        'resource "google_cloud_run_v3_job" "y" {\n}\n'
    )
    assert check(schema, wrong) == [
        "wrong.tf:3: google_cloud_run_v2_job has no block templates",
        "wrong.tf:9: google_cloud_run_v2_job has no attribute template.template.containers.imagee",
        "wrong.tf:14: no resource type google_cloud_run_v3_job in the provider",
    ]


def test_the_schema_is_of_the_provider_version_terraform_pins(schema):
    lock = json.loads((SCHEMA_DIR / "package-lock.json").read_text())
    package = json.loads((PACKAGE / "package.json").read_text())
    assert lock["packages"]["node_modules/@cdktf/provider-google"]["version"] == package["version"]
    pinned = re.search(r'version\s*=\s*"([0-9.]+)"', (TERRAFORM / "versions.tf").read_text())
    assert pinned and package["cdktf"]["provider"]["version"] == pinned.group(1)


def test_terraform_fmt_where_a_terraform_binary_exists(capsys):
    terraform = shutil.which("terraform")
    if terraform is None:
        with capsys.disabled():
            print("\nterraform fmt -check: not run (no terraform binary on this machine)")
        return
    done = subprocess.run(
        [terraform, "fmt", "-check", "-diff", str(TERRAFORM)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout
