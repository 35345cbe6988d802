"""Where every document lives in Firestore: each collection's name and each document's
path, in one place (as rq's `rq/keys.py` names its Redis keys).

  tasks/{taskId}                          a task (api/models/documents.py TaskDoc)
  tasks/{taskId}/events/{seq:010d}        its event log
  idempotency/{sha256}                    an Idempotency-Key: the task(s) it created
  usage/{owner}_{yyyymmdd}                an owner's counters for one UTC day
  usage/{owner}_{yyyymmdd}/llmShards/{k}  its model spend that day, spent and reserved, sharded
  llmSpend/{taskId}                       a task's model spend: spent, reserved, calls in flight
  llmCalls/{callId}                       a model call's reservation until it settles (the outbox)
  admissionShards/{owner}:u{k}            unsettled (and queued) tasks, sharded
  admissionDaily/{owner}:d{yyyymmdd}s{k}  tasks created per UTC day, sharded
  admissionRunning/{owner*}               tasks running at once
  agents/{agentId}                        an agent
  conversations/{id}                      a conversation
  conversations/{id}/messages/{messageId} its messages (ids sort by time)
  conversations/{id}/turns/{n:010d}       the claim of its n-th turn
  uploads/{uploadId}                      an upload's record
  webhookDeliveries/{taskId}              a finished task's webhook delivery
  webhookSecrets/{owner*}                 an owner's webhook signing secrets
  apiKeys/{sha256 of the key}             an API key's record
  userSecrets/{owner*}                    an owner's secrets: names, sizes, times
  userSecrets/{owner*}/values/{name}      one secret's sealed value (ADR 0016)
  runLaunchWindows/{window}-{shard}       RunJob calls taken in one window (launch_rate.py)
  userEnvironments/{owner*}               an owner's custom environments, by id
  environmentBuilds/{hash}                a manifest's one build: building or ready

`{owner*}` is the owner passed through `document_id` (an owner such as `__x__` is
not a valid document id). The admission collections are top-level, so the
dispatcher's query for owners with queued tasks needs only Firestore's automatic
single-field index; their ids end with a fixed-form suffix after the owner, so no
two (owner, shard) pairs share one.
"""

from __future__ import annotations

from datetime import UTC, datetime

TASKS = "tasks"
EVENTS = "events"
IDEMPOTENCY = "idempotency"
USAGE = "usage"
LLM_SHARDS = "llmShards"
LLM_SPEND = "llmSpend"
LLM_CALLS = "llmCalls"
UNSETTLED_SHARDS = "admissionShards"
DAILY_SHARDS = "admissionDaily"
RUNNING = "admissionRunning"
AGENTS = "agents"
CONVERSATIONS = "conversations"
MESSAGES = "messages"
TURNS = "turns"
UPLOADS = "uploads"
DELIVERIES = "webhookDeliveries"
WEBHOOK_SECRETS = "webhookSecrets"
API_KEYS = "apiKeys"
USER_SECRETS = "userSecrets"
SECRET_VALUES = "values"
LAUNCH_WINDOWS = "runLaunchWindows"
USER_ENVIRONMENTS = "userEnvironments"
ENVIRONMENT_BUILDS = "environmentBuilds"


def document_id(name: str) -> str:
    """`name` as a document id, unchanged unless Firestore would refuse it (`.`, `..`,
    `__.*__`): those become `~` and their hex, which no user id (api/services/auth.py
    USER_ID) can be, so no two names share an id."""
    if name in (".", "..") or (len(name) >= 4 and name.startswith("__") and name.endswith("__")):
        return "~" + name.encode().hex()
    return name


def utc_day(now: datetime) -> str:
    """The UTC day of `now` as `yyyymmdd`, as daily documents name it."""
    return now.astimezone(UTC).strftime("%Y%m%d")


# -- tasks ---------------------------------------------------------------------------


def task_path(task_id: str) -> str:
    return f"{TASKS}/{task_id}"


def event_doc_id(seq: int) -> str:
    return f"{seq:010d}"


def event_path(task_id: str, seq: int) -> str:
    return f"{TASKS}/{task_id}/{EVENTS}/{event_doc_id(seq)}"


def idempotency_path(key_id: str) -> str:
    return f"{IDEMPOTENCY}/{key_id}"


# -- usage and admission ----------------------------------------------------------------


def usage_id(owner: str, now: datetime) -> str:
    return f"{owner}_{utc_day(now)}"


def usage_path(owner: str, now: datetime) -> str:
    return f"{USAGE}/{usage_id(owner, now)}"


def day_usage_path(owner: str, day: str) -> str:
    """`usage_path` by the day's `yyyymmdd`."""
    return f"{USAGE}/{owner}_{day}"


def llm_shard_path(owner: str, day: str, shard: int) -> str:
    return f"{USAGE}/{owner}_{day}/{LLM_SHARDS}/{shard}"


def llm_spend_path(task_id: str) -> str:
    return f"{LLM_SPEND}/{task_id}"


def llm_call_path(call_id: str) -> str:
    return f"{LLM_CALLS}/{call_id}"


def unsettled_shard_id(owner: str, shard: int) -> str:
    return f"{owner}:u{shard}"


def unsettled_shard_path(owner: str, shard: int) -> str:
    return f"{UNSETTLED_SHARDS}/{unsettled_shard_id(owner, shard)}"


def daily_shard_path(owner: str, day: str, shard: int) -> str:
    return f"{DAILY_SHARDS}/{owner}:d{day}s{shard}"


def running_doc_id(owner: str) -> str:
    return document_id(owner)


def running_path(owner: str) -> str:
    return f"{RUNNING}/{running_doc_id(owner)}"


# -- agents, conversations, uploads --------------------------------------------------


def agent_path(agent_id: str) -> str:
    return f"{AGENTS}/{agent_id}"


def conversation_path(conversation_id: str) -> str:
    return f"{CONVERSATIONS}/{conversation_id}"


def messages_path(conversation_id: str) -> str:
    return f"{CONVERSATIONS}/{conversation_id}/{MESSAGES}"


def message_path(conversation_id: str, message_id: str) -> str:
    return f"{messages_path(conversation_id)}/{message_id}"


def turn_path(conversation_id: str, turn: int) -> str:
    return f"{CONVERSATIONS}/{conversation_id}/{TURNS}/{turn:010d}"


def upload_path(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}"


# -- webhooks and API keys -----------------------------------------------------------


def delivery_path(task_id: str) -> str:
    return f"{DELIVERIES}/{task_id}"


def webhook_secrets_path(owner: str) -> str:
    return f"{WEBHOOK_SECRETS}/{document_id(owner)}"


def api_key_path(key_id: str) -> str:
    return f"{API_KEYS}/{key_id}"


# -- user secrets --------------------------------------------------------------------


def user_secrets_path(owner: str) -> str:
    return f"{USER_SECRETS}/{document_id(owner)}"


def secret_value_path(owner: str, name: str) -> str:
    return f"{user_secrets_path(owner)}/{SECRET_VALUES}/{name}"


# -- custom environments -------------------------------------------------------------


def user_environments_path(owner: str) -> str:
    return f"{USER_ENVIRONMENTS}/{document_id(owner)}"


def environment_build_path(manifest_hash: str) -> str:
    return f"{ENVIRONMENT_BUILDS}/{manifest_hash}"


def launch_window_path(window: int, shard: int) -> str:
    return f"{LAUNCH_WINDOWS}/{window}-{shard}"


# -- what kind of document a path names (firestore_codec.py) -------------------------


def document_kind(path: str) -> str | None:
    """ "task" or "event" for a task's or an event's path; None for any other."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == TASKS:
        return "task"
    if len(parts) == 4 and parts[0] == TASKS and parts[2] == EVENTS:
        return "event"
    return None
