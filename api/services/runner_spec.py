"""The task spec a runner's claim is answered with: built here, in one function, so a
contract test can check it against the runner's declaration of it
(job-runner/job_runner/spec.py TaskSpec) without a runner."""

from __future__ import annotations

from typing import Any

from api import config
from api.config import Settings
from api.models.documents import TaskDoc
from api.services.conversations import ConversationService
from api.services.environments import EnvironmentService
from api.services.files import FileService


def task_spec(
    task: TaskDoc,
    settings: Settings,
    files: FileService,
    conversations: ConversationService,
    max_budget_usd: float | None = None,
    environments: EnvironmentService | None = None,
) -> dict[str, Any]:
    """What the runner needs to run the task: kind, input and sandbox limits; for an
    agent task also the agent's settings, the conversation so far, and what it may still
    spend in dollars (`maxBudgetUsd`, for an engine that stops itself at a budget)."""
    network = task["input"].get("network")
    spec: dict[str, Any] = {
        "id": task["id"],
        "kind": task["kind"],
        "input": task["input"],
        "limits": {
            "maxOutputBytes": settings.max_output_bytes,
            "diskMb": settings.task_disk_mb,
            "network": network is True and settings.allow_task_network,
            "heartbeatSeconds": config.HEARTBEAT_INTERVAL_SECONDS,
            "outputs": {
                "maxFiles": config.MAX_OUTPUT_FILES,
                "maxFileBytes": config.MAX_OUTPUT_FILE_BYTES,
                "maxTotalBytes": config.MAX_OUTPUT_TOTAL_BYTES,
                "maxPathChars": config.MAX_OUTPUT_PATH_CHARS,
            },
        },
        "inputFiles": files.input_listing(task),
    }
    if isinstance(network, dict):
        spec["limits"]["egress"] = egress_spec(network["allow"], settings)
    if task["input"].get("secrets"):
        spec["secrets"] = list(task["input"]["secrets"])  # names: values are fetched
    workspace = files.workspace_spec(task, settings.max_workspace_bytes)
    if workspace is not None:
        spec["workspace"] = workspace
    if environments is not None and task["kind"] == "environment":
        # A build: pip's packages, from the package index, the only egress it has.
        spec["build"] = environments.build_spec(task)
        spec["limits"]["egress"] = egress_spec(environments.build_domains(task), settings)
    if task.get("environment"):
        spec["environment"] = task["environment"]
    if task["kind"] == "agent":
        spec["agent"] = task["agent"]
        spec["conversationId"] = task.get("conversationId")
        spec["history"] = conversations.history(task)
        if max_budget_usd is not None:
            spec["limits"]["maxBudgetUsd"] = max_budget_usd
    return spec


def egress_spec(allow: list[str], settings: Settings) -> dict[str, Any]:
    """The runner's egress proxy's list and bounds; in local development, the hosts
    mapped to loopback stand-ins (EGRESS_DEV_HOSTS, refused on Cloud Run)."""
    egress: dict[str, Any] = {
        "allow": list(allow),
        "maxConnections": settings.egress_max_connections,
        "maxBytes": settings.egress_max_mb * config.MIB,
    }
    if settings.egress_dev_hosts:
        egress["devHosts"] = dict(settings.egress_dev_hosts)
    return egress
