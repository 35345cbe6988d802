"""Conversations with agents, and agent tasks (DESIGN sections 6.2-6.5).

A message starts a turn: the user's message and the turn's agent task are stored in
one transaction, and the agent's reply is appended in the transaction that settles
that task (`conversation_turns`). One turn at a time: a message sent while a turn is
still running is refused with 409 `turn_in_progress` (the client retries when the
task ends), so replies never interleave and each turn sees the whole history.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from api import config
from api.adapters.firestore_store import FirestoreStore
from api.adapters.firestore_tasks import idempotency_record
from api.errors import ApiError, not_found
from api.models import AgentTaskInput, CompatConversationBody, ConversationCreate
from api.models.documents import (
    TERMINAL,
    AgentSnapshot,
    ConversationDoc,
    MessageDoc,
    TaskDoc,
    TurnClaim,
)
from api.services.agents import AgentService
from api.services.conversation_turns import message_doc, new_message_id
from api.services.files import FileService
from api.services.state_machine import utcnow
from api.services.tasks import TaskService

MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX = 50, 200
# A turn claimed this long ago whose request never stored it is taken over.
TURN_CLAIM_STALE_SECONDS = 60
# How long a request waits for a racing twin (same Idempotency-Key) to store its turn.
TWIN_WAIT_SECONDS = 5.0


def _turn_in_progress(active: str | None) -> ApiError:
    which = f" (task {active})" if active else ""
    return ApiError(
        409,
        "turn_in_progress",
        f"The agent is still answering{which}; send the next message when that task has ended.",
    )


Found = TypeVar("Found")


def wait_for_record(
    read: Callable[[], Found | None], seconds: float = TWIN_WAIT_SECONDS
) -> Found | None:
    """Poll `read` until it returns something, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = read()
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def idempotency_ids(owner: str, key: str, conversation_id: str, text: str) -> tuple[str, str]:
    """(key id, body hash) of a message's Idempotency-Key."""
    if not 1 <= len(key) <= 200:
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters."
        )
    key_id = hashlib.sha256(f"{owner}\x00message\x00{key}".encode()).hexdigest()
    body_hash = hashlib.sha256(f"{conversation_id}\x00{text}".encode()).hexdigest()
    return key_id, body_hash


def _plain(network: Any) -> Any:
    return network.model_dump() if isinstance(network, BaseModel) else network


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


class ConversationService:
    def __init__(
        self, store: FirestoreStore, tasks: TaskService, agents: AgentService, files: FileService
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.agents = agents
        self.files = files

    # -- agent tasks -------------------------------------------------------------

    def _agent_task(
        self, owner: str, prompt: str, agent_id: str | None, **limits: Any
    ) -> tuple[dict[str, Any], AgentSnapshot]:
        """The input and the agent snapshot of an agent task. The snapshot is taken now,
        so later edits of the agent do not change a task already submitted."""
        settings = self.agents.settings_for(owner, agent_id)
        task_input = {
            "kind": "agent",
            "prompt": prompt,
            "agentId": agent_id,
            "maxTurns": limits.get("max_turns") or settings["maxTurns"] or config.DEFAULT_MAX_TURNS,
            "maxTokens": limits.get("max_tokens")
            or settings["maxTokens"]
            or config.DEFAULT_MAX_TOKENS,
            "timeoutSeconds": limits.get("timeout_seconds", config.DEFAULT_AGENT_TIMEOUT_SECONDS),
            "memoryMb": limits.get("memory_mb", config.DEFAULT_AGENT_MEMORY_MB),
            # A task's own `network` and `secrets` override its agent's.
            "network": _given(limits.get("network"), settings["network"]),
            "secrets": _given(limits.get("secrets"), settings["secrets"]),
        }
        environment = _given(limits.get("environment"), settings.get("environment"))
        if environment is not None:
            task_input["environment"] = environment
        max_cost = limits.get("max_cost_usd") or settings.get("maxCostUsd")
        if max_cost is not None:
            task_input["maxCostUsd"] = max_cost
        agent: AgentSnapshot = {
            "systemPrompt": settings["systemPrompt"] or "",
            "model": settings["model"],
            "tools": settings["tools"],
            "engine": limits.get("engine") or settings["engine"],
            "maxResponseTokens": config.MAX_RESPONSE_TOKENS,
        }
        return task_input, agent

    def submit_agent_task(self, owner: str, spec: AgentTaskInput, key: str | None) -> TaskDoc:
        task_input, extra = self.agent_task_parts(owner, spec)
        task, _ = self.tasks.submit(
            owner, "agent", task_input, key, webhook_url=spec.webhook_url, **extra
        )
        return task

    def agent_task_parts(
        self, owner: str, spec: AgentTaskInput
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(input, extra task fields) of an agent task: one, or an item of a batch."""
        task_input, agent = self._agent_task(
            owner,
            spec.prompt,
            spec.agent_id,
            engine=spec.engine,
            max_turns=spec.max_turns,
            max_tokens=spec.max_tokens,
            max_cost_usd=spec.max_cost_usd,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            network=_plain(spec.network),
            secrets=spec.secrets,
            environment=spec.environment,
        )
        return task_input, {"agent": agent}

    # -- conversations -------------------------------------------------------------

    def create(self, owner: str, spec: ConversationCreate) -> ConversationDoc:
        if spec.agent_id is not None:
            self.agents.get(owner, spec.agent_id)  # 404 unless it is the caller's
        now = utcnow()
        conversation: ConversationDoc = {
            "id": secrets.token_hex(12),
            "owner": owner,
            "agentId": spec.agent_id,
            "title": spec.title,
            "activeTaskId": None,
            "createdAt": now,
            "updatedAt": now,
        }
        self.store.create_conversation(conversation)
        return conversation

    def get(self, owner: str, conversation_id: str) -> ConversationDoc:
        conversation = (
            self.store.get_conversation(conversation_id)
            if conversation_id.isalnum() and len(conversation_id) <= 64
            else None
        )
        if conversation is None or conversation.get("owner") != owner:
            raise not_found("conversation")
        return conversation

    def list(self, owner: str, *, limit: int) -> list[ConversationDoc]:
        return self.store.list_conversations(owner, limit=limit)

    def messages(
        self, conversation: ConversationDoc, *, after: str | None, limit: int
    ) -> tuple[builtins.list[MessageDoc], str | None]:
        """A page of messages, oldest first; the id to continue after, or None."""
        page = self.store.list_messages(conversation["id"], after_id=after, limit=limit + 1)
        next_after = page[limit - 1]["id"] if len(page) > limit else None
        return page[:limit], next_after

    def delete(self, owner: str, conversation_id: str) -> None:
        conversation = self.get(owner, conversation_id)
        active = conversation.get("activeTaskId")
        if active:
            self.tasks.cancel(owner, active)
        self.store.delete_conversation(conversation_id)
        # Its workspace snapshots go with it (after the record: a snapshot nothing
        # points to is harmless, a record pointing to nothing is not).
        self.files.delete_conversation(conversation_id)

    def post_message(
        self, owner: str, conversation_id: str, text: str, idempotency_key: str | None = None
    ) -> tuple[MessageDoc, TaskDoc]:
        """Store the user's message and start the turn's agent task. The same
        Idempotency-Key with the same message returns the same message and task, even
        when the two requests race; with another message, 422.

        One turn at a time without contention: the turn's number is claimed by
        creating its document (`turns/{n}`), which exactly one of any number of racing
        requests can do; the rest answer 409 at once. The winner then writes the turn
        in a transaction no other request competes for.

        :raises ApiError: 404 no such conversation; 409 a turn is still running.
        """
        conversation = self.get(owner, conversation_id)
        self.tasks.admit(network=False)
        key_id = body_hash = None
        if idempotency_key is not None:
            key_id, body_hash = idempotency_ids(owner, idempotency_key, conversation_id, text)
            repeated = self._repeated_message(conversation_id, key_id, body_hash)
            if repeated is not None:
                return repeated
        try:
            task_input, agent = self._agent_task(owner, text, conversation.get("agentId"))
        except ApiError as error:
            if error.status != 404:
                raise
            raise ApiError(422, "agent_deleted", "This conversation's agent was deleted.") from None
        environment = self.tasks.environment_fields(owner, task_input)  # 404/409 before the turn
        now = utcnow()
        turn = self._claim_turn(conversation, now, key_id, body_hash)
        if isinstance(turn, tuple):
            return turn  # the same Idempotency-Key won the race: its turn is this one
        try:
            reservation = self.tasks.admission.reserve(owner, now)
        except ApiError:
            self.store.release_turn(conversation_id, turn)
            raise
        message_id = new_message_id(now)
        message = message_doc(message_id, "user", text, now, None)
        task = self.tasks.new_task(
            owner,
            "agent",
            task_input,
            agent=agent,
            conversationId=conversation_id,
            conversationMessageId=message_id,
            conversationMessageAt=now,
            admissionShard=reservation.shard,
            **environment,
        )
        message["taskId"] = task["id"]

        def check(current: ConversationDoc | None) -> None:
            if current is None or current.get("owner") != owner:
                raise not_found("conversation")
            if current.get("turns", 0) != turn - 1:
                raise _turn_in_progress(current.get("activeTaskId"))

        idempotency = None
        if key_id is not None and body_hash is not None:
            record = idempotency_record(task["id"], body_hash, now, messageId=message_id)
            idempotency = (key_id, record)
        updates = {"activeTaskId": task["id"], "updatedAt": now, "turns": turn}
        try:
            self.store.start_turn(conversation_id, check, message, task, updates, idempotency)
        except BaseException:
            self.tasks.admission.give_back(owner, [reservation], now)
            self.store.release_turn(conversation_id, turn)
            raise
        return message, self.tasks.start(task)

    def _claim_turn(
        self,
        conversation: ConversationDoc,
        now: datetime,
        key_id: str | None,
        body_hash: str | None,
    ) -> int | tuple[MessageDoc, TaskDoc]:
        """The number of the turn this request may start, or 409 `turn_in_progress`.
        With an Idempotency-Key that another request is already using for this turn,
        that request's (message, task) once it has stored them, or 422 when that
        request sent another message (its body hash differs)."""
        conversation_id = conversation["id"]
        active = conversation.get("activeTaskId")
        if active:
            running = self.store.get_task(active)
            if running is not None and running["status"] not in TERMINAL:
                raise _turn_in_progress(active)
        turn = conversation.get("turns", 0) + 1
        claim: TurnClaim = {"createdAt": now, "idempotencyKey": key_id}
        if self.store.claim_turn(conversation_id, turn, claim):
            return turn
        holder = self.store.get_turn_claim(conversation_id, turn)
        if key_id is not None and holder is not None and holder.get("idempotencyKey") == key_id:
            repeated = wait_for_record(
                lambda: self._repeated_message(conversation_id, key_id, body_hash)
            )
            if repeated is not None:
                return repeated
        created = holder.get("createdAt") if holder is not None else None
        if created is not None and (now - created).total_seconds() > TURN_CLAIM_STALE_SECONDS:
            # The request that claimed it died before storing its turn: take it over.
            self.store.release_turn(conversation_id, turn)
            if self.store.claim_turn(conversation_id, turn, claim):
                return turn
        raise _turn_in_progress(active)

    def _repeated_message(
        self, conversation_id: str, key_id: str, body_hash: str | None
    ) -> tuple[MessageDoc, TaskDoc] | None:
        earlier = self.store.get_idempotency(key_id)
        if earlier is None:
            return None
        if body_hash is not None and earlier["bodyHash"] != body_hash:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different message.",
            )
        earlier_message = self.store.get_message(conversation_id, earlier["messageId"])
        earlier_task = self.store.get_task(earlier["taskId"])
        if earlier_message is None or earlier_task is None:
            return None
        return earlier_message, earlier_task

    def history(self, task: TaskDoc) -> builtins.list[dict[str, str]]:
        """The conversation before this turn's message, oldest first, bounded."""
        conversation_id = task.get("conversationId")
        if not conversation_id:
            return []
        earlier = self.store.messages_before(
            conversation_id,
            before=task["conversationMessageAt"],
            limit=config.MAX_HISTORY_MESSAGES,
        )
        history, total = [], 0
        for message in reversed(earlier):  # newest first, until the budget is spent
            total += len(message["content"])
            if total > config.MAX_HISTORY_CHARS:
                break
            history.append({"role": message["role"], "content": message["content"]})
        return history[::-1]

    # -- the old clients' call -------------------------------------------------

    def compat_conversation(self, owner: str, body: CompatConversationBody) -> dict[str, Any]:
        if body.conversation_id is not None:
            conversation_id = body.conversation_id
        else:
            conversation_id = self.create(owner, ConversationCreate.model_validate({}))["id"]
        _, task = self.post_message(owner, conversation_id, body.message)
        task = self.tasks.wait(owner, task["id"], config.COMPAT_REPLY_WAIT_SECONDS)
        completed = task["status"] == "completed"
        return {
            "conversationId": conversation_id,
            "text": (task.get("result") or {}).get("text") if completed else None,
            "status": task["status"],
            "component": None,
            "agentCreated": False,
            "taskId": task["id"],
            "error": task.get("error"),
        }
