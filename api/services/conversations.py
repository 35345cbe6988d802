"""Conversations with agents, and agent tasks (DESIGN sections 6.2-6.5).

A message starts a turn: the user's message and the turn's agent task are stored in
one transaction, and the agent's reply is appended in the transaction that settles
that task (`conversation_turns`). One turn at a time: a message sent while a turn is
still running is refused with 409 `turn_in_progress` (the client retries when the
task ends), so replies never interleave and each turn sees the whole history.
"""

from __future__ import annotations

import hashlib
import secrets

from api import config
from api.adapters.firestore_store import (
    EVENTS,
    IDEMPOTENCY,
    TASKS,
    event_doc_id,
    idempotency_record,
)
from api.errors import ApiError, not_found
from api.models import AgentTaskInput, CompatConversationBody, ConversationCreate
from api.services.agents import AgentService
from api.services.conversation_turns import (
    CONVERSATIONS,
    MESSAGES,
    conversation_path,
    message_doc,
    message_path,
    new_message_id,
)
from api.services.state_machine import TERMINAL, utcnow
from api.services.tasks import TaskService, rfc3339

MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX = 50, 200


def idempotency_ids(owner: str, key: str, conversation_id: str, text: str) -> tuple[str, str]:
    """(document path, body hash) of a message's Idempotency-Key."""
    if not 1 <= len(key) <= 200:
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters."
        )
    key_id = hashlib.sha256(f"{owner}\x00message\x00{key}".encode()).hexdigest()
    body_hash = hashlib.sha256(f"{conversation_id}\x00{text}".encode()).hexdigest()
    return f"{IDEMPOTENCY}/{key_id}", body_hash


def render_message(message: dict) -> dict:
    return {
        "id": message["id"],
        "role": message["role"],
        "content": message["content"],
        "taskId": message.get("taskId"),
        "createdAt": rfc3339(message.get("createdAt")),
    }


def render_conversation(conversation: dict) -> dict:
    return {
        "id": conversation["id"],
        "title": conversation.get("title", ""),
        "agentId": conversation.get("agentId"),
        "activeTaskId": conversation.get("activeTaskId"),
        "createdAt": rfc3339(conversation.get("createdAt")),
        "updatedAt": rfc3339(conversation.get("updatedAt")),
    }


class ConversationService:
    def __init__(self, store, tasks: TaskService, agents: AgentService) -> None:
        self.store = store
        self.tasks = tasks
        self.agents = agents

    # -- agent tasks -------------------------------------------------------------

    def _agent_task(self, owner: str, prompt: str, agent_id: str | None, **limits) -> tuple:
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
            "network": limits.get("network", False),
        }
        agent = {
            "systemPrompt": settings["systemPrompt"] or "",
            "model": settings["model"],
            "tools": settings["tools"],
            "engine": limits.get("engine") or settings["engine"],
            "maxResponseTokens": config.MAX_RESPONSE_TOKENS,
        }
        return task_input, agent

    def submit_agent_task(self, owner: str, spec: AgentTaskInput, key: str | None) -> dict:
        task_input, agent = self._agent_task(
            owner,
            spec.prompt,
            spec.agent_id,
            engine=spec.engine,
            max_turns=spec.max_turns,
            max_tokens=spec.max_tokens,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            network=spec.network,
        )
        task, _ = self.tasks.submit(owner, "agent", task_input, key, agent=agent)
        return task

    # -- conversations -------------------------------------------------------------

    def create(self, owner: str, spec: ConversationCreate) -> dict:
        if spec.agent_id is not None:
            self.agents.get(owner, spec.agent_id)  # 404 unless it is the caller's
        now = utcnow()
        conversation = {
            "id": secrets.token_hex(12),
            "owner": owner,
            "agentId": spec.agent_id,
            "title": spec.title,
            "activeTaskId": None,
            "createdAt": now,
            "updatedAt": now,
        }
        self.store.create_doc(conversation_path(conversation["id"]), conversation)
        return conversation

    def get(self, owner: str, conversation_id: str) -> dict:
        conversation = (
            self.store.get_doc(conversation_path(conversation_id))
            if conversation_id.isalnum() and len(conversation_id) <= 64
            else None
        )
        if conversation is None or conversation.get("owner") != owner:
            raise not_found("conversation")
        return conversation

    def list(self, owner: str, *, limit: int) -> list[dict]:
        return self.store.list_owned(CONVERSATIONS, owner, limit=limit, after_id=None)

    def messages(self, conversation: dict, *, after: str | None, limit: int):
        """A page of messages, oldest first; the id to continue after, or None."""
        page = self.store.list_children(
            f"{conversation_path(conversation['id'])}/{MESSAGES}", after_id=after, limit=limit + 1
        )
        next_after = page[limit - 1]["id"] if len(page) > limit else None
        return page[:limit], next_after

    def delete(self, owner: str, conversation_id: str) -> None:
        conversation = self.get(owner, conversation_id)
        if conversation.get("activeTaskId"):
            self.tasks.cancel(owner, conversation["activeTaskId"])
        self.store.delete_tree(conversation_path(conversation_id), (MESSAGES,))

    def post_message(
        self, owner: str, conversation_id: str, text: str, idempotency_key: str | None = None
    ) -> tuple[dict, dict]:
        """Store the user's message and start the turn's agent task, in one transaction.
        The same Idempotency-Key with the same message returns the same message and
        task, even when the two requests race; with another message, 422.

        :raises ApiError: 404 no such conversation; 409 a turn is still running.
        """
        conversation = self.get(owner, conversation_id)
        self.tasks.admit(network=False)
        try:
            task_input, agent = self._agent_task(owner, text, conversation.get("agentId"))
        except ApiError as error:
            if error.status != 404:
                raise
            raise ApiError(422, "agent_deleted", "This conversation's agent was deleted.") from None
        now = utcnow()
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
            eventSeq=1,
        )
        message["taskId"] = task["id"]
        key_path = body_hash = None
        if idempotency_key is not None:
            key_path, body_hash = idempotency_ids(owner, idempotency_key, conversation_id, text)

        def start_turn(read, write):
            if key_path is not None:
                earlier = read(key_path)
                if earlier is not None:
                    if earlier["bodyHash"] != body_hash:
                        raise ApiError(
                            422,
                            "idempotency_key_reused",
                            "This Idempotency-Key was used with a different message.",
                        )
                    earlier_message = read(message_path(conversation_id, earlier["messageId"]))
                    earlier_task = read(f"{TASKS}/{earlier['taskId']}")
                    if earlier_message is not None and earlier_task is not None:
                        return earlier_message, earlier_task
            current = read(conversation_path(conversation_id))
            if current is None or current.get("owner") != owner:
                raise not_found("conversation")
            active = current.get("activeTaskId")
            if active:
                running = read(f"{TASKS}/{active}")
                if running is not None and running["status"] not in TERMINAL:
                    raise ApiError(
                        409,
                        "turn_in_progress",
                        f"The agent is still answering (task {active}); send the next "
                        "message when that task has ended.",
                    )
            for path, data, merge in self.tasks.quota.reserve(owner, now, read):
                write(path, data, merge)
            write(message_path(conversation_id, message_id), message)
            write(f"{TASKS}/{task['id']}", task)
            write(
                f"{TASKS}/{task['id']}/{EVENTS}/{event_doc_id(1)}",
                {"seq": 1, "type": "status", "data": {"status": "queued"}, "at": now},
            )
            write(
                conversation_path(conversation_id),
                {"activeTaskId": task["id"], "updatedAt": now},
                merge=True,
            )
            if key_path is not None:
                record = idempotency_record(task["id"], body_hash, now, messageId=message_id)
                write(key_path, record)
            return None

        repeated = self.store.run_transaction(start_turn)
        if repeated is not None:
            return repeated
        return message, self.tasks.start(task)

    def history(self, task: dict) -> list[dict]:
        """The conversation before this turn's message, oldest first, bounded."""
        conversation_id = task.get("conversationId")
        if not conversation_id:
            return []
        earlier = self.store.list_children_before(
            f"{conversation_path(conversation_id)}/{MESSAGES}",
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

    def compat_conversation(self, owner: str, body: CompatConversationBody) -> dict:
        if body.conversation_id is not None:
            conversation_id = body.conversation_id
        else:
            conversation_id = self.create(owner, ConversationCreate())["id"]
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
