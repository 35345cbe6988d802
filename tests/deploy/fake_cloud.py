"""A recording stand-in for `gcloud` and `curl`, for running deploy-gcp.sh offline.

The tests put two shims named `gcloud` and `curl` on PATH that run this file. Every
call appends its argv and environment to FAKE_CLOUD_LOG (JSON lines) and reads and
writes a small model of the project in FAKE_CLOUD_STATE (JSON): describe answers
"not found" until a create has run, so a second run against the same state file sees
everything the first one made. A command this model does not know fails loudly
(exit 99), so the script cannot quietly call something untested.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

PROJECT_NUMBER = "123456789012"
NOT_FOUND, UNKNOWN = 1, 99


class Call:
    """One gcloud command line: its positional words and its --flag=value flags."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.words = [a for a in argv if not a.startswith("-")]
        self.flags: dict[str, list[str]] = {}
        for arg in argv:
            if arg.startswith("--"):
                name, _, value = arg[2:].partition("=")
                self.flags.setdefault(name, []).append(value)

    def flag(self, name: str, default: str = "") -> str:
        return self.flags.get(name, [default])[-1]

    def starts(self, *words: str) -> bool:
        return self.words[: len(words)] == list(words)


def load_state(path: Path) -> dict:
    state = json.loads(path.read_text()) if path.exists() else {}
    for key in ("apis", "resources", "policies", "secrets", "builds"):
        state.setdefault(key, [] if key in ("apis", "builds") else {})
    state.setdefault("indexes", [])
    state.setdefault("ttls", [])
    return state


def fail(message: str, code: int = NOT_FOUND) -> int:
    print(f"ERROR: (gcloud) {message}", file=sys.stderr)
    return code


# -- gcloud ---------------------------------------------------------------------------

# The command groups whose resources are described, created and deployed by name.
GROUPS = (
    ("artifacts", "repositories"),
    ("storage", "buckets"),
    ("iam", "service-accounts"),
    ("iam", "roles"),
    ("secrets",),
    ("run", "jobs"),
    ("run", "services"),
    ("scheduler", "jobs"),
)


def gcloud(call: Call, state: dict) -> int:
    project = call.flag("project")
    if call.starts("auth", "list"):
        if os.environ.get("FAKE_CLOUD_LOGGED_OUT"):
            return 0
        print("deployer@example.com")
        return 0
    if call.starts("projects", "describe"):
        if call.words[2] == os.environ.get("FAKE_CLOUD_MISSING_PROJECT"):
            return fail("NOT_FOUND: project")
        print(PROJECT_NUMBER)
        return 0
    if call.starts("services", "list"):
        print("\n".join(state["apis"]))
        return 0
    if call.starts("services", "enable"):
        state["apis"] += [api for api in call.words[2:] if api not in state["apis"]]
        return 0
    if "get-iam-policy" in call.words or "add-iam-policy-binding" in call.words:
        return iam_policy(call, state)
    if call.starts("firestore"):
        return firestore(call, state, project)
    if call.starts("secrets", "versions"):
        return secret_versions(call, state)
    if call.starts("builds", "submit"):
        state["builds"].append({"argv": call.argv, "config": Path(call.flag("config")).read_text()})
        return 0
    if call.starts("run", "deploy"):
        return deploy_service(call, state, call.words[2])
    if call.starts("run", "services", "update"):
        service = state["resources"].get(f"run services/{call.words[3]}")
        if service is None:
            return fail("NOT_FOUND: service")
        service["env"].update(env_vars(call.flag("update-env-vars")))
        return 0
    return named_resource(call, state, project)


def named_resource(call: Call, state: dict, project: str) -> int:
    for group in GROUPS:
        if not call.starts(*group):
            continue
        verb, rest = call.words[len(group)], call.words[len(group) + 1 :]
        if rest and rest[0] == "http":  # scheduler jobs create|update http NAME
            rest = rest[1:]
        name = rest[0] if rest else ""
        if group == ("iam", "service-accounts") and verb == "create":
            name = f"{name}@{project}.iam.gserviceaccount.com"
        key = f"{' '.join(group)}/{name}"
        resource = state["resources"].get(key)
        if verb == "describe":
            if resource is None:
                return fail(f"NOT_FOUND: {key}")
            print(describe_value(call, resource))
            return 0
        if verb == "create":
            if resource is not None:
                return fail(f"ALREADY_EXISTS: {key}", 1)
            state["resources"][key] = {"argv": call.argv, "flags": call.flags}
            return 0
        if verb in ("update", "deploy"):  # deploy creates or updates
            if verb == "update" and resource is None:
                return fail(f"NOT_FOUND: {key}")
            state["resources"][key] = {"argv": call.argv, "flags": call.flags}
            return 0
    print(f"fake gcloud: no model for: gcloud {' '.join(call.argv)}", file=sys.stderr)
    return UNKNOWN


def describe_value(call: Call, resource: dict) -> str:
    """What `describe --format=value(FIELD)` prints for the fields the script reads."""
    fmt = call.flag("format")
    if fmt == "value(status.url)":
        return resource["url"]
    if fmt == "value(httpTarget.uri)":
        return resource["flags"]["uri"][-1]
    if fmt == "value(deleted)":
        return ""
    return json.dumps({"name": call.words[-1]})


def env_vars(spec: str) -> dict[str, str]:
    """gcloud's KEY=VALUE list, with its ^DELIM^ escape for values holding commas."""
    delimiter = ","
    if spec.startswith("^"):
        delimiter, spec = spec[1:].split("^", 1)
    return dict(item.split("=", 1) for item in spec.split(delimiter) if item)


def deploy_service(call: Call, state: dict, name: str) -> int:
    key = f"run services/{name}"
    url = state["resources"].get(key, {}).get("url") or f"https://{name}-x2fake-uc.a.run.app"
    state["resources"][key] = {
        "argv": call.argv,
        "flags": call.flags,
        "url": url,
        "env": env_vars(call.flag("set-env-vars")),
    }
    return 0


def iam_policy(call: Call, state: dict) -> int:
    verb = "get-iam-policy" if "get-iam-policy" in call.words else "add-iam-policy-binding"
    at = call.words.index(verb)
    key = f"{' '.join(call.words[:at])}/{call.words[at + 1]}"
    bindings = state["policies"].setdefault(key, [])
    if verb == "get-iam-policy":
        print(json.dumps({"bindings": bindings, "etag": "BwXfake"}))
        return 0
    role, member = call.flag("role"), call.flag("member")
    for binding in bindings:
        if binding["role"] == role:
            if member not in binding["members"]:
                binding["members"].append(member)
            return 0
    bindings.append({"role": role, "members": [member]})
    return 0


def firestore(call: Call, state: dict, project: str) -> int:
    if call.starts("firestore", "databases"):
        return named_firestore_database(call, state)
    if call.starts("firestore", "indexes", "composite", "list"):
        print(json.dumps(state["indexes"]))
        return 0
    if call.starts("firestore", "indexes", "composite", "create"):
        group = call.flag("collection-group")
        fields = []
        for config in call.flags["field-config"]:
            parts = dict(part.split("=", 1) for part in config.split(","))
            fields.append({"fieldPath": parts["field-path"], "order": parts["order"].upper()})
        # Firestore adds __name__ in the last field's direction.
        fields.append({"fieldPath": "__name__", "order": fields[-1]["order"]})
        number = len(state["indexes"])
        name = f"projects/{project}/databases/(default)/collectionGroups/{group}/indexes/i{number}"
        state["indexes"].append(
            {"name": name, "queryScope": call.flag("query-scope").upper(), "fields": fields}
        )
        return 0
    if call.starts("firestore", "fields", "ttls", "list"):
        group = call.flag("collection-group")
        for ttl in state["ttls"]:
            if ttl.startswith(f"{group}/"):
                field = ttl.split("/", 1)[1]
                print(
                    f"projects/{project}/databases/(default)/collectionGroups/{group}/fields/{field}"
                )
        return 0
    if call.starts("firestore", "fields", "ttls", "update"):
        state["ttls"].append(f"{call.flag('collection-group')}/{call.words[4]}")
        return 0
    print(f"fake gcloud: no model for: gcloud {' '.join(call.argv)}", file=sys.stderr)
    return UNKNOWN


def named_firestore_database(call: Call, state: dict) -> int:
    key = f"firestore databases/{call.flag('database')}"
    verb = call.words[2]
    if verb == "describe":
        return 0 if key in state["resources"] else fail("NOT_FOUND: database")
    if verb == "create":
        if key in state["resources"]:
            return fail("ALREADY_EXISTS: database")
        state["resources"][key] = {"argv": call.argv, "flags": call.flags}
        return 0
    return UNKNOWN


def secret_versions(call: Call, state: dict) -> int:
    verb = call.words[2]
    name = call.flag("secret") if verb == "access" else call.words[3]
    if f"secrets/{name}" not in state["resources"]:
        return fail(f"NOT_FOUND: secret {name}")
    versions = state["secrets"].setdefault(name, [])
    if verb == "list":
        if versions:
            print(f"projects/{PROJECT_NUMBER}/secrets/{name}/versions/{len(versions)}")
        return 0
    if verb == "access":
        if not versions:
            return fail("NOT_FOUND: version")
        sys.stdout.write(versions[-1])
        return 0
    if verb == "add":
        source = call.flag("data-file")
        data = sys.stdin.read() if source == "-" else Path(source).read_text()
        versions.append(data)
        return 0
    return UNKNOWN


# -- curl -------------------------------------------------------------------------------


def curl(argv: list[str], state: dict) -> int:
    """Answers the smoke test's requests like the deployed API would."""
    headers, url, data = [], "", None
    args = iter(argv)
    for arg in args:
        if arg == "-H":
            value = next(args)
            if value.startswith("@"):
                headers += Path(value[1:]).read_text().splitlines()
            else:
                headers.append(value)
        elif arg in ("--data", "--max-time", "--retry"):
            value = next(args)
            if arg == "--data":
                data = value
        elif arg.startswith("http"):
            url = arg
    path = urlparse(url).path
    state.setdefault("requests", []).append({"url": url, "headers": headers, "data": data})
    if path == "/health":
        broken = os.environ.get("FAKE_CLOUD_HEALTH_BROKEN")
        print('{"status": "starting"}' if broken else '{"status":"ok","service":"api-server"}')
        return 0
    if path == "/api/tasks" and data:
        print(json.dumps({"id": "task-1", "status": "queued"}))
        return 0
    if path == "/api/tasks/task-1":
        result = {"exitCode": 0, "stdout": "42\n", "stderr": ""}
        print(json.dumps({"id": "task-1", "status": "completed", "result": result}))
        return 0
    print(f"curl: (22) The requested URL returned error: 404 ({url})", file=sys.stderr)
    return 22


def main() -> int:
    tool, argv = sys.argv[1], sys.argv[2:]
    with open(os.environ["FAKE_CLOUD_LOG"], "a") as log:
        log.write(json.dumps({"tool": tool, "argv": argv, "environ": dict(os.environ)}) + "\n")
    state_path = Path(os.environ["FAKE_CLOUD_STATE"])
    state = load_state(state_path)
    code = gcloud(Call(argv), state) if tool == "gcloud" else curl(argv, state)
    state_path.write_text(json.dumps(state, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
