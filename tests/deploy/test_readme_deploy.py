"""The README's "Deploy" section agrees with deploy-gcp.sh: its commands are accepted
as written, and its teardown deletes everything the script creates."""

from __future__ import annotations

import re
import shlex

from tests.deploy.harness import PROJECT, ROOT, Project, assert_ok

SECTION = "## Deploy"


def deploy_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:] if end == -1 else text[start:end]


def shell_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", deploy_section(), re.M | re.S)


def test_every_script_command_in_the_readme_is_accepted(tmp_path):
    cloud = Project(tmp_path)
    key = cloud.key_file()
    lines = [
        line.split("  #")[0]
        for block in shell_blocks()
        for line in block.splitlines()
        if line.startswith("./deploy-gcp.sh")
    ]
    lines += re.findall(r"`(\./deploy-gcp\.sh [^`]+)`", deploy_section())
    assert len(lines) >= 4
    for line in lines:
        argv = [str(key) if arg.startswith("~/") else arg for arg in shlex.split(line)[1:]]
        argv = [a for a in argv if a not in ("--project", "my-project")]
        run = cloud.run(*argv, "--dry-run")
        assert_ok(run)
        assert run.requests == []
    cloud.close()


def test_the_teardown_deletes_everything_the_script_creates(tmp_path):
    project = Project(tmp_path)
    run = project.run("--dry-run", "--anthropic-key-file", "-")
    project.close()
    assert_ok(run)
    created, project_grants = [], []
    printed = [shlex.split(line[2:]) for line in run.gcloud_commands()]
    for argv in printed:
        positional = [a for a in argv[1:] if not a.startswith("-")]
        for verb in ("create", "deploy"):
            if verb in positional:
                rest = positional[positional.index(verb) + 1 :]
                created.append(rest[-1] if rest else None)
        if positional[:2] == ["projects", "add-iam-policy-binding"]:
            project_grants.append([a for a in argv if a.startswith(("--member=", "--role="))])
    teardown = shell_blocks()[-1].replace("$P", PROJECT)
    assert {
        "agent-runner",
        "agent-runner-candidate",
        "agent-runner-small",
        "agent-runner-small-candidate",
        "agent-api",
    } <= set(created)
    for name in created:
        if name is None:  # the Firestore database and indexes, by --database
            assert "firestore databases delete" in teardown
            continue
        assert name in teardown, f"{name} is created but the README never deletes it"
    # Project-level grants outlive their deleted accounts unless removed.
    assert len(project_grants) == 3
    for member, role in project_grants:
        assert f"remove-iam-policy-binding {PROJECT} {member} {role}" in teardown
