"""What the job-runner asks of the API (docs/decisions/0001-runner-reports-over-http.md):
claim its task and get its spec, report events and the result, send and fetch files.
The routes in api/routes/internal.py and internal_files.py parse and answer; the rules
(the state machine, the watch, the dispatcher, files and conversation history) meet
here. A task token authorizes each call, for its own task only."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from api import config
from api.errors import ApiError
from api.services.conversation_turns import snapshot_object
from api.services.environments import archive_object
from api.services.files import MAX_OUTPUT_PARTS, MAX_SNAPSHOT_PARTS, output_object
from api.services.reconcile_auth import ReconcileAuth
from api.services.runner_spec import task_spec
from api.services.state_machine import ClaimRefused, TaskStatus, utcnow
from api.services.task_tokens import InvalidTaskToken, verify_task_token

if TYPE_CHECKING:
    from api.config import Settings
    from api.models.documents import TaskDoc
    from api.services.conversations import ConversationService
    from api.services.dispatcher import Dispatcher
    from api.services.environments import EnvironmentService
    from api.services.files import FileService
    from api.services.llm_budget import LlmBudget
    from api.services.state_machine import TaskStateMachine
    from api.services.task_watch import TaskWatch
    from api.services.user_secrets import UserSecretService
    from api.services.webhooks import WebhookService

# An event as the state machine stores it: (type, data).
Event = tuple[str, object]


class RunnerService:
    def __init__(
        self,
        settings: Settings,
        machine: TaskStateMachine,
        dispatcher: Dispatcher,
        watch: TaskWatch,
        files: FileService,
        conversations: ConversationService,
        webhooks: WebhookService,
        secrets: UserSecretService,
        environments: EnvironmentService,
        *,
        llm_budget: LlmBudget | None = None,
    ) -> None:
        self.settings = settings
        self.machine = machine
        self.dispatcher = dispatcher
        self.watch = watch
        self.files = files
        self.conversations = conversations
        self.webhooks = webhooks
        self.secrets = secrets
        self.environments = environments
        self.reconcile_auth = ReconcileAuth(settings)
        self.llm_budget = llm_budget

    def authorize(self, task_id: str, token: str) -> None:
        """401 unless `token` is the task token of `task_id`."""
        try:
            verify_task_token(self.settings.task_token_key, token, task_id)
        except InvalidTaskToken as error:
            raise ApiError(401, "invalid_task_token", str(error)) from None

    def authorize_reconcile(self, headers: Mapping[str, str]) -> None:
        """401 unless the caller is Cloud Scheduler's OIDC identity (RECONCILE_INVOKER)
        or holds RECONCILE_SECRET."""
        if not self.reconcile_auth.authorized(headers):
            raise ApiError(
                401,
                "unauthenticated",
                "Reconciliation needs the scheduler's OIDC token or the X-Reconcile-Secret header.",
            )

    def reconcile(self) -> dict[str, int]:
        """Launch due queued tasks, settle overdue ones, send due webhooks, settle model
        calls whose usage was parked (api/services/llm_budget.py)."""
        if self.llm_budget is not None:
            self.llm_budget.settle_due(utcnow())
        return {
            "dispatched": self.dispatcher.dispatch_pending(),
            "settled": self.dispatcher.reconcile(),
            "webhooksSent": self.webhooks.deliver_due(),
        }

    # -- the task's life ----------------------------------------------------------------

    def claim(self, task_id: str, execution: str, attempt: int) -> dict:
        """The claimed task's status, claim and spec when this execution attempt may run
        it (idempotent); 409 otherwise."""
        try:
            task = self.machine.claim(
                task_id,
                execution,
                attempt,
                execution_name=self.dispatcher.qualify_execution(execution),
            )
        except ClaimRefused as refusal:
            raise ApiError(409, "claim_refused", str(refusal)) from None
        self.watch.changed(task_id, task)
        return {"status": task["status"], "claim": task["claim"], "spec": self.spec(task)}

    def spec(self, task: TaskDoc) -> dict[str, Any]:
        """What the runner needs to run the task (api/services/runner_spec.py)."""
        budget = None
        if task["kind"] == "agent" and self.llm_budget is not None:
            budget = self.llm_budget.remaining_usd(task, utcnow())
        return task_spec(
            task, self.settings, self.files, self.conversations, budget, self.environments
        )

    def secret_values(self, task_id: str, execution: str, attempt: int) -> dict[str, str]:
        """The values of the secrets the task names, its owner's, only while this
        execution attempt holds the running task (a token alone is not enough once
        the task has moved on). 409 otherwise."""
        task = self.machine.store.get_task(task_id)
        claim = task.get("claim") if task is not None else None
        holds = claim is not None and (claim["execution"], claim["attempt"]) == (execution, attempt)
        if task is None or task["status"] != TaskStatus.RUNNING.value or not holds:
            raise ApiError(409, "not_running", "This execution does not hold the running task.")
        return self.secrets.values(task["owner"], list(task["input"].get("secrets") or []))

    def events(self, task_id: str, execution: str, attempt: int, batch: list[Event]) -> int:
        """Store a batch of events (an empty one is a heartbeat); the next sequence
        number. 409 tells the runner to stop."""
        batch = self._priced(task_id, batch)
        task = self.machine.append_events(
            task_id, execution, attempt, batch, config.MAX_EVENTS_PER_TASK
        )
        if task is None:
            raise ApiError(409, "not_running", "This execution no longer holds the task; stop.")
        if batch:
            self.watch.changed(task_id, task)
        return task["eventSeq"]

    def finish(
        self,
        task_id: str,
        execution: str,
        attempt: int,
        status: TaskStatus,
        result: dict | None,
        error: dict | None,
        events: list[Event],
        sandbox: dict | None = None,
    ) -> tuple[TaskDoc, bool]:
        """Settle the task with the runner's outcome: (task, accepted). A duplicate or
        late report is not accepted: the first terminal status stands. sandbox: how the
        runner isolated and bounded it, kept in the task's `execution`."""
        result = self.files.shape_result(task_id, result)
        events = self._priced(task_id, events)
        if result is not None and isinstance(result.get("usage"), dict) and self.llm_budget:
            # What the proxy metered, not what the runner counted: the one authority.
            result = {**result, "usage": {**result["usage"], "costUsd": self._cost(task_id)}}
        task, accepted = self.machine.finish(
            task_id,
            execution,
            attempt,
            status,
            result,
            error,
            events=events,
            max_events=config.MAX_EVENTS_PER_TASK,
            sandbox=sandbox,
        )
        if task is None:
            raise ApiError(404, "not_found", "No such task.")
        self.watch.changed(task_id, task)
        if task.get("conversationId"):
            self.files.turn_settled(task)
        if task["kind"] == "environment" and accepted:
            self.environments.build_finished(task)
        if accepted:
            self.dispatcher.kick()  # its slot is free: the next queued task may start
        return task, accepted

    def _priced(self, task_id: str, batch: list[Event]) -> list[Event]:
        """`usage` events with the task's cost so far (`costUsd`, as metered)."""
        if self.llm_budget is None or not any(kind == "usage" for kind, _ in batch):
            return batch
        cost = self._cost(task_id)
        return [
            (kind, {**data, "costUsd": cost})
            if kind == "usage" and isinstance(data, dict)
            else (kind, data)
            for kind, data in batch
        ]

    def _cost(self, task_id: str) -> float:
        assert self.llm_budget is not None
        return self.llm_budget.spent_usd(task_id)

    # -- the task's files ---------------------------------------------------------------

    def task(self, task_id: str) -> TaskDoc:
        task = self.files.task(task_id)
        if task is None:
            raise ApiError(404, "not_found", "No such task.")
        return task

    def put_output(
        self, task_id: str, index: int, part: int, parts: int, stream: BinaryIO, size: int | None
    ) -> dict:
        """One piece of the task's index-th output file."""
        task = self.task(task_id)
        if index >= config.MAX_OUTPUT_FILES:
            raise ApiError(
                400, "invalid_request", f"index must be below {config.MAX_OUTPUT_FILES}."
            )
        target = output_object(task_id, index)
        return self.files.store_piece(
            task, target, part, parts, stream, MAX_OUTPUT_PARTS, False, size
        )

    def put_snapshot(
        self, task_id: str, part: int, parts: int, stream: BinaryIO, size: int | None
    ) -> dict:
        """One piece of this conversation turn's workspace archive."""
        task = self.task(task_id)
        if not task.get("conversationId"):
            raise ApiError(409, "no_workspace", "This task is not a conversation turn.")
        target = snapshot_object(task["conversationId"], task_id)
        return self.files.store_piece(
            task, target, part, parts, stream, MAX_SNAPSHOT_PARTS, True, size
        )

    def put_environment(
        self, task_id: str, part: int, parts: int, stream: BinaryIO, size: int | None
    ) -> dict:
        """One piece of the archive an environment's build made."""
        task = self.task(task_id)
        if task["kind"] != "environment":
            raise ApiError(409, "not_a_build", "This task builds no environment.")
        max_parts = -(
            -self.settings.environment_max_mb * config.MIB // config.MAX_RUNNER_CHUNK_BYTES
        )
        target = archive_object(task["input"]["hash"])
        return self.files.store_piece(task, target, part, parts, stream, max_parts, True, size)

    def environment(self, task_id: str) -> tuple[str, int]:
        """(object name, size) of the archive of the custom environment the task uses."""
        return self.environments.archive(self.task(task_id))

    def input_file(self, task_id: str, index: int) -> tuple[str, int]:
        """(object name, size) of the task's index-th input file (an upload)."""
        return self.files.input_object(self.task(task_id), index)

    def workspace(self, task_id: str) -> tuple[str, int]:
        """(object name, size) of the conversation's current workspace archive."""
        return self.files.workspace_object(self.task(task_id))

    def open_object(self, name: str, start: int, stop: int) -> Iterator[bytes]:
        return self.files.open_object(name, start, stop)
