"""One typed settings object, read from the environment once (DESIGN section 5)."""

from __future__ import annotations

import json
import os
import secrets
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# Defaults and bounds, in one place.
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_SECONDS = 60
MIN_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS = 1, 3600
DEFAULT_MEMORY_MB = 512
MIN_MEMORY_MB, MAX_MEMORY_MB = 64, 4096
# A task's /workspace, /tmp and /dev/shm together (one tmpfs, where the runner can
# mount one), and the runner's own memory beside its task. tmpfs pages are memory on
# Cloud Run: a job's memory must hold MAX_MEMORY_MB + TASK_DISK_MB + RUNNER_RESERVE_MB
# (deploy-gcp.sh derives it from these; tests/deploy checks Terraform's).
TASK_DISK_MB = 2048
RUNNER_RESERVE_MB = 512
# The runner's sandbox backends (job_runner/sandboxes/choice.py); "auto" probes them.
SANDBOXES = ("auto", "gvisor", "bwrap-root", "bwrap", "gvisor-rootless", "none")
MAX_WAIT_SECONDS = 60
# Requests that hold a server thread (?wait, SSE) at once; the rest get an immediate
# answer (wait) or a 429 (SSE), so health checks and short calls always find a
# thread. Keep it below gunicorn's threads (gunicorn.conf.py, GUNICORN_THREADS=16).
MAX_HELD_REQUESTS = 12
# A user's share of them, so one user's streams cannot take every held thread.
MAX_HELD_REQUESTS_PER_USER = 4

# Input limits keep a task document well under Firestore's 1 MiB document limit.
# MAX_BODY_BYTES is every route's body limit unless the route sets its own
# (api/routes/common.py body_limit).
MAX_BODY_BYTES = 1024 * 1024
# The runner's reports have limits of their own, sized by what a runner sends at most:
# a claim is a few ids; an events batch is <= 100 events of <= 8 KiB of output each,
# which JSON escaping can grow ~6x; a result carries both streams (128 KiB each, also
# escaped), inline file contents and its last events batch. All under Cloud Run's
# 32 MiB HTTP/1 request cap.
MAX_RUNNER_CLAIM_BYTES = 64 * 1024
MAX_RUNNER_EVENTS_BYTES = 8 * 1024 * 1024
MAX_RUNNER_RESULT_BYTES = 16 * 1024 * 1024
MAX_CODE_BYTES = 100 * 1024
MAX_STDIN_BYTES = 100 * 1024
MAX_FILES = 20
MAX_FILES_TOTAL_BYTES = 200 * 1024
MAX_FILE_PATH_CHARS = 200
# How long a task, its events and its output files are kept (Firestore TTL on
# tasks/events `expireAt`, the bucket's lifecycle rule on tasks/).
TASK_RETENTION_DAYS = 30
# A custom environment's archive that nobody has read or used for this long is deleted
# by the bucket's lifecycle rule (its Custom-Time, moved on each use); the next use
# builds it again (api/services/environments.py).
ENVIRONMENT_ARCHIVE_DAYS = 30
# One name in a path: Linux file systems hold 255 bytes (NAME_MAX), not characters.
MAX_FILE_NAME_BYTES = 255
# Output kept per stream in the result (the runner drains and counts the rest).
MAX_OUTPUT_BYTES = 128 * 1024

# Seconds an execution may take beyond its task's own timeout: its start (tens of
# seconds on Cloud Run, sometimes minutes), the workspace restore and the output
# upload. The execution's timeout and the task's deadline both hold it. Billing is for
# what runs, so a generous margin costs nothing; the runner still stops the program at
# the task's own timeout. (deploy-gcp.sh derives the jobs' timeout from it.)
RUNNER_OVERHEAD_SECONDS = 300
# How long a non-terminal task may go without a heartbeat before it is checked.
HEARTBEAT_INTERVAL_SECONDS = 5
HEARTBEAT_GRACE_SECONDS = 30
# How long a task may sit in `dispatched` with no claim before it is checked.
CLAIM_GRACE_SECONDS = 120
RECONCILE_INTERVAL_SECONDS = 5
LOCAL_MAX_CONCURRENT_TASKS = 4
# Cloud Run runs at most 1,000 job executions per region at once; stay well below.
MAX_TASKS_IN_FLIGHT = 200
# Jobs by memory class (executions cannot override CPU or memory): code tasks of up to
# this much memory run in the small job (CLOUD_RUN_JOB_SMALL), 1 CPU; the rest, and
# Claude Code agents, in the large one (CLOUD_RUN_JOB). Each job's memory holds its
# largest task + TASK_DISK_MB + RUNNER_RESERVE_MB (deploy-gcp.sh derives both sizes).
SMALL_JOB_MAX_TASK_MEMORY_MB = 1024
# RunJob calls per minute, fleet-wide (api/services/launch_rate.py): below Cloud Run's
# "Job run requests per minute per region" quota (its default is not published; read it
# in the Console's Quotas page).
RUN_JOB_LAUNCHES_PER_MINUTE = 50
# How long a task may stay queued while RunJob answers 429 before it fails
# dispatch_failed.
MAX_QUEUED_SECONDS = 3600
# Tasks not yet settled (queued included) beyond which submissions get 503.
MAX_PENDING_TASKS = 1000
LIST_PAGE_DEFAULT, LIST_PAGE_MAX = 20, 100
MAX_EVENTS_PER_TASK = 2000
MAX_EVENT_BATCH = 100

# Files and workspaces (DESIGN section 11).
MIB = 1024 * 1024
FILES_BUCKET = "agent-files"  # the local default: `make dev` creates it in the emulator
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
UPLOAD_TTL_HOURS = 24
MAX_OUTPUT_FILES = 500
MAX_OUTPUT_FILE_BYTES = 1024 * 1024 * 1024
MAX_OUTPUT_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
MAX_OUTPUT_PATH_CHARS = 1000
MAX_SKIPPED_LISTED = 100
# What one runner request may carry: Cloud Run caps an HTTP/1 request at 32 MiB
# (https://cloud.google.com/run/quotas#cloud_run_limits), so bigger files are chunked.
MAX_RUNNER_CHUNK_BYTES = 32 * 1024 * 1024
# How long one Cloud Storage call retries transient errors before the API answers 503.
STORAGE_RETRY_SECONDS = 10.0
# Deadlines on a client (api/serving.py, ADR 0015): its request line and headers, each
# piece of its body, and taking each piece of a response.
REQUEST_HEADER_SECONDS = 10.0
REQUEST_BODY_IDLE_SECONDS = 10.0
RESPONSE_WRITE_IDLE_SECONDS = 30.0
GOOGLE_OIDC_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
# How long one Firestore call (its retries included) may take before the API answers 503.
FIRESTORE_DEADLINE_SECONDS = 8.0
# A conversation's workspace, unpacked (its hidden engine directory included).
MAX_WORKSPACE_BYTES = 1024 * 1024 * 1024


# Agents (DESIGN 6.3). The allow-list starts with current models that the installed
# anthropic SDK knows and does not list as deprecated (a unit test checks this);
# ALLOWED_MODELS and DEFAULT_MODEL override it.
DEFAULT_MODEL = "claude-sonnet-4-6"
ALLOWED_MODELS = ("claude-sonnet-4-6", "claude-opus-4-7", "claude-haiku-4-5")
RUNNER_TOOLS = ("bash", "python", "read_file", "write_file", "edit_file", "list_files")
# Agent engines (DESIGN section 12): the real Claude Code CLI, or the built-in loop.
DEFAULT_AGENT_ENGINE = "claude-code"
# Agents created before engines existed ran the built-in loop, and still do.
STORED_AGENT_ENGINE = "messages"
# Claude Code's runtime needs room (it peaks near 250 MB, and its tools run beside it).
DEFAULT_AGENT_MEMORY_MB = 2048
DEFAULT_MAX_TURNS, MAX_MAX_TURNS = 10, 50
DEFAULT_MAX_TOKENS, MIN_MAX_TOKENS, MAX_MAX_TOKENS = 100_000, 1_000, 2_000_000
MAX_RESPONSE_TOKENS = 4096
DEFAULT_AGENT_TIMEOUT_SECONDS = 300
USER_DAILY_TOKEN_BUDGET = 2_000_000
# Tasks of one user dispatched or running at once (enforced at dispatch: more wait
# queued), and queued + running at once (past it, submissions get 429).
MAX_ACTIVE_TASKS_PER_USER = 20
MAX_UNSETTLED_TASKS_PER_USER = 500
MAX_TASKS_PER_USER_PER_DAY = 2_000
# Shards of each per-user admission counter (ADR 0007): a burst spreads over them.
ADMISSION_SHARDS = 16
MAX_BATCH_TASKS = 100
# The per-user request rate on the public API, per API instance (a token bucket):
# a sustained rate in requests per second, and the burst allowed above it.
USER_REQUESTS_PER_SECOND = 20.0
USER_REQUEST_BURST = 200
# Webhooks: how long a delivery is retried (with exponential backoff from
# WEBHOOK_FIRST_RETRY_SECONDS, capped at an hour) and each attempt's timeout.
WEBHOOK_RETRY_HOURS = 24.0
WEBHOOK_FIRST_RETRY_SECONDS = 5.0
WEBHOOK_TIMEOUT_SECONDS = 10.0
WEBHOOK_MAX_REDIRECTS = 3
MAX_WEBHOOK_URL_CHARS = 2048
# User secrets and egress (DESIGN section 16). A secret is an environment variable in
# the sandbox: its value is bounded so that all a task names stay far below Linux's
# 2 MiB for a program's environment; a task names at most MAX_SECRETS_PER_TASK.
MAX_SECRETS_PER_USER = 100
MAX_SECRET_BYTES = 16 * 1024
MAX_SECRETS_PER_TASK = 20
MAX_SECRET_NAME_CHARS = 64
MAX_EGRESS_PATTERNS = 50
# Custom environments (DESIGN section 17): how many per user, how many packages each,
# the archive's size, the build's time and memory, and where packages come from.
MAX_ENVIRONMENTS_PER_USER = 20
MAX_ENVIRONMENT_PACKAGES = 50
MAX_REQUIREMENT_CHARS = 200
ENVIRONMENT_MAX_MB = 500
ENVIRONMENT_BUILD_SECONDS = 600
ENVIRONMENT_BUILD_MEMORY_MB = 2048
PACKAGE_INDEX_URL = "https://pypi.org/simple/"
PACKAGE_INDEX_DOMAINS = ("pypi.org", "files.pythonhosted.org")
NPM_REGISTRY_URL = "https://registry.npmjs.org/"
NPM_REGISTRY_DOMAINS = ("registry.npmjs.org",)
# Connections and bytes (both ways) a task's egress proxy allows.
EGRESS_MAX_CONNECTIONS = 256
EGRESS_MAX_MB = 1024
MAX_PROMPT_CHARS = 50_000
MAX_SYSTEM_PROMPT_CHARS = 20_000
MAX_HISTORY_MESSAGES = 100
MAX_HISTORY_CHARS = 200_000
# How long POST /api/conversation (the old clients' call) waits for the reply.
COMPAT_REPLY_WAIT_SECONDS = 25
LLM_UPSTREAM_TIMEOUT_SECONDS = 600
# The most output one model call may ask for (Claude Code asks 32000).
LLM_MAX_RESPONSE_TOKENS = 64_000
# Anthropic's own request limit: whole conversations with tool results travel.
# https://docs.anthropic.com/en/api/overview#request-size-limits
LLM_PROXY_MAX_BODY_BYTES = 32 * 1000 * 1000

# Spend (DESIGN section 15, README "Spend"). Model calls of one task in flight at once;
# past it the proxy answers 429 with Retry-After.
LLM_CALLS_IN_FLIGHT_PER_TASK = 4
LLM_BUSY_RETRY_AFTER_SECONDS = 2
# count_tokens calls per task per minute (a token bucket per API instance).
COUNT_TOKENS_PER_TASK_PER_MINUTE = 30
# Models a task may call besides its agent's own, when they cost no more: Claude Code
# uses its small model for some of its own work (it names it with and without a date).
HELPER_MODELS = ("claude-haiku-4-5", "claude-haiku-4-5-20251001")
USER_DAILY_COST_BUDGET_USD = 50.0
MAX_MAX_COST_USD = 10_000.0
# USD per million tokens: input, output, cache write (5-minute), cache read; Anthropic's
# list prices (https://docs.anthropic.com/en/docs/about-claude/pricing). A dated model id
# takes the prices of the longest entry it starts with. MODEL_PRICES (JSON) overrides.
DEFAULT_MODEL_PRICES: dict[str, dict[str, float]] = {
    "claude-opus-4": {"input": 15.0, "output": 75.0, "cacheWrite": 18.75, "cacheRead": 1.5},
    "claude-opus-4-5": {"input": 5.0, "output": 25.0, "cacheWrite": 6.25, "cacheRead": 0.5},
    "claude-opus-4-6": {"input": 5.0, "output": 25.0, "cacheWrite": 6.25, "cacheRead": 0.5},
    "claude-opus-4-7": {"input": 5.0, "output": 25.0, "cacheWrite": 6.25, "cacheRead": 0.5},
    "claude-sonnet-4": {"input": 3.0, "output": 15.0, "cacheWrite": 3.75, "cacheRead": 0.3},
    "claude-haiku-4-5": {"input": 1.0, "output": 5.0, "cacheWrite": 1.25, "cacheRead": 0.1},
}
# Reconciler: a reservation whose call never settled (its API instance died) is
# settled this long after the upstream timeout, counted as spent.
LLM_RESERVATION_GRACE_SECONDS = 60

# Identity (DESIGN 6.1): where Firebase ID tokens' signing certificates are published
# (x509 PEM by key id), as Firebase documents:
# https://firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library
FIREBASE_CERTS_URL = (
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
)


FIREBASE_WEB_CONFIG_FIELDS = ("apiKey", "authDomain", "projectId")


def _firebase_web_config(raw: str) -> dict[str, str]:
    """FIREBASE_WEB_CONFIG: the `firebaseConfig` object of the Firebase console's web
    app, as JSON. Only string fields are kept; three of them are required."""
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError("FIREBASE_WEB_CONFIG must be a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("FIREBASE_WEB_CONFIG must be a JSON object")
    missing = [name for name in FIREBASE_WEB_CONFIG_FIELDS if not isinstance(value.get(name), str)]
    if missing:
        raise ValueError(f"FIREBASE_WEB_CONFIG lacks {', '.join(missing)}")
    return {name: text for name, text in value.items() if isinstance(text, str)}


def parse_dev_hosts(raw: str) -> dict[str, str]:
    """EGRESS_DEV_HOSTS: `host=ADDRESS:PORT` pairs, comma-separated; each ADDRESS a
    loopback address (a stand-in on this machine)."""
    import ipaddress

    hosts = {}
    for pair in filter(None, (part.strip() for part in raw.split(","))):
        host, _, target = pair.partition("=")
        address, _, port = target.rpartition(":")
        try:
            loopback = ipaddress.ip_address(address.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not host or not loopback or not port.isdigit():
            raise ValueError(
                f"EGRESS_DEV_HOSTS takes host=ADDRESS:PORT pairs with a loopback ADDRESS, "
                f"got {pair!r}"
            )
        hosts[host.strip().lower()] = target
    return hosts


PRICE_FIELDS = ("input", "output", "cacheWrite", "cacheRead")


def _model_prices(raw: str) -> dict[str, dict[str, float]]:
    """MODEL_PRICES: JSON, model -> the four prices (USD per million tokens), merged over
    DEFAULT_MODEL_PRICES (an entry replaces the default entry of its model)."""
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError("MODEL_PRICES must be a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("MODEL_PRICES must be a JSON object")
    table = dict(DEFAULT_MODEL_PRICES)
    for model, prices in value.items():
        if not isinstance(prices, dict) or set(prices) != set(PRICE_FIELDS):
            raise ValueError(f"MODEL_PRICES[{model!r}] needs exactly {', '.join(PRICE_FIELDS)}")
        if not all(isinstance(p, int | float) and p >= 0 for p in prices.values()):
            raise ValueError(f"MODEL_PRICES[{model!r}]: prices are numbers >= 0")
        table[model] = {name: float(prices[name]) for name in PRICE_FIELDS}
    return table


# Variables given in MiB whose setting is in bytes.
_MIB_VARIABLES = {"MAX_UPLOAD_MB": "max_upload_bytes", "MAX_WORKSPACE_MB": "max_workspace_bytes"}


class Settings(BaseSettings):
    """The API's settings. `Settings.from_env()` reads them from the environment once
    (each field's `validation_alias` is its variable); `Settings(...)` takes fields by
    name and reads no environment, for tests."""

    model_config = SettingsConfigDict(
        frozen=True, case_sensitive=True, env_ignore_empty=True, validate_by_name=True
    )

    port: int = Field(default=DEFAULT_PORT, validation_alias="PORT")
    project: str = Field(default="demo-agent-platform", validation_alias="GOOGLE_CLOUD_PROJECT")
    executor: str = Field(default="local", validation_alias="EXECUTOR")
    cloud_run_job: str | None = Field(default=None, validation_alias="CLOUD_RUN_JOB")
    cloud_run_endpoint: str = Field(
        default="https://run.googleapis.com", validation_alias="CLOUD_RUN_ENDPOINT"
    )
    # Unset: derived from PORT by from_env.
    public_url: str | None = Field(default=None, validation_alias="PUBLIC_URL")
    auth_mode: str = Field(default="dev", validation_alias="AUTH_MODE")
    firebase_certs_url: str = Field(
        default=FIREBASE_CERTS_URL, validation_alias="FIREBASE_CERTS_URL"
    )
    # Google's OIDC signing certificates, for the scheduler's reconcile token.
    google_oidc_certs_url: str = Field(
        default=GOOGLE_OIDC_CERTS_URL, validation_alias="GOOGLE_OIDC_CERTS_URL"
    )
    # Set by Cloud Run itself (K_SERVICE), never by an operator.
    on_cloud_run: bool = False
    task_token_key: bytes = Field(
        default_factory=lambda: secrets.token_bytes(32),
        validation_alias="TASK_TOKEN_KEY",
        repr=False,
    )
    # Read by from_env when TASK_TOKEN_KEY is unset.
    task_token_key_secret: str | None = Field(
        default=None, validation_alias="TASK_TOKEN_KEY_SECRET"
    )
    sandbox: str = Field(default="auto", validation_alias="SANDBOX")
    # The local executor's runners give tasks this root as / (devtools/task_root.py);
    # the runner image sets its own (/opt/task-root).
    task_root: str | None = Field(default=None, validation_alias="TASK_ROOT")
    allow_task_network: bool = Field(default=False, validation_alias="ALLOW_TASK_NETWORK")
    local_max_concurrent_tasks: int = Field(
        default=LOCAL_MAX_CONCURRENT_TASKS, validation_alias="LOCAL_MAX_CONCURRENT_TASKS"
    )
    runner_python: str | None = Field(default=None, validation_alias="RUNNER_PYTHON")
    max_tasks_in_flight: int = Field(
        default=MAX_TASKS_IN_FLIGHT, validation_alias="MAX_TASKS_IN_FLIGHT"
    )
    # The small job (unset: every task runs in CLOUD_RUN_JOB) and its largest task.
    cloud_run_job_small: str | None = Field(default=None, validation_alias="CLOUD_RUN_JOB_SMALL")
    small_job_max_task_memory_mb: int = Field(
        default=SMALL_JOB_MAX_TASK_MEMORY_MB, validation_alias="SMALL_JOB_MAX_TASK_MEMORY_MB"
    )
    run_job_launches_per_minute: int = Field(
        default=RUN_JOB_LAUNCHES_PER_MINUTE, validation_alias="RUN_JOB_LAUNCHES_PER_MINUTE"
    )
    max_queued_seconds: float = Field(
        default=MAX_QUEUED_SECONDS, validation_alias="MAX_QUEUED_SECONDS"
    )
    # None: inline for cloudrun, background for local.
    dispatch_inline: bool | None = Field(default=None, validation_alias="DISPATCH_INLINE")
    max_pending_tasks: int = Field(default=MAX_PENDING_TASKS, validation_alias="MAX_PENDING_TASKS")
    reconcile_secret: str | None = Field(
        default=None, validation_alias="RECONCILE_SECRET", repr=False
    )
    reconcile_invoker: str | None = Field(default=None, validation_alias="RECONCILE_INVOKER")
    max_output_bytes: int = MAX_OUTPUT_BYTES
    task_disk_mb: int = Field(default=TASK_DISK_MB, validation_alias="TASK_DISK_MB")
    reconcile_interval_seconds: float = Field(
        default=RECONCILE_INTERVAL_SECONDS, validation_alias="RECONCILE_INTERVAL_SECONDS"
    )
    heartbeat_grace_seconds: float = Field(
        default=HEARTBEAT_GRACE_SECONDS, validation_alias="HEARTBEAT_GRACE_SECONDS"
    )
    anthropic_api_key: str | None = Field(
        default=None, validation_alias="ANTHROPIC_API_KEY", repr=False
    )
    anthropic_api_key_secret: str | None = Field(
        default=None, validation_alias="ANTHROPIC_API_KEY_SECRET"
    )
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    default_model: str = Field(default=DEFAULT_MODEL, validation_alias="DEFAULT_MODEL")
    # A comma-separated list in the environment.
    allowed_models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=ALLOWED_MODELS, validation_alias="ALLOWED_MODELS"
    )
    user_daily_token_budget: int = Field(
        default=USER_DAILY_TOKEN_BUDGET, validation_alias="USER_DAILY_TOKEN_BUDGET"
    )
    user_daily_cost_budget_usd: float = Field(
        default=USER_DAILY_COST_BUDGET_USD, ge=0, validation_alias="USER_DAILY_COST_BUDGET_USD"
    )
    llm_calls_in_flight_per_task: int = Field(
        default=LLM_CALLS_IN_FLIGHT_PER_TASK, ge=1, validation_alias="LLM_CALLS_IN_FLIGHT_PER_TASK"
    )
    count_tokens_per_task_per_minute: int = Field(
        default=COUNT_TOKENS_PER_TASK_PER_MINUTE,
        ge=1,
        validation_alias="COUNT_TOKENS_PER_TASK_PER_MINUTE",
    )
    # A comma-separated list in the environment.
    helper_models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=HELPER_MODELS, validation_alias="HELPER_MODELS"
    )
    # JSON in the environment: {"model": {"input": .., "output": .., "cacheWrite": ..,
    # "cacheRead": ..}}, USD per million tokens, merged over the defaults.
    model_prices: Annotated[dict[str, dict[str, float]], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_PRICES), validation_alias="MODEL_PRICES"
    )
    max_active_tasks_per_user: int = Field(
        default=MAX_ACTIVE_TASKS_PER_USER, validation_alias="MAX_ACTIVE_TASKS_PER_USER"
    )
    max_unsettled_tasks_per_user: int = Field(
        default=MAX_UNSETTLED_TASKS_PER_USER, validation_alias="MAX_UNSETTLED_TASKS_PER_USER"
    )
    max_tasks_per_user_per_day: int = Field(
        default=MAX_TASKS_PER_USER_PER_DAY, validation_alias="MAX_TASKS_PER_USER_PER_DAY"
    )
    # The Firebase web app's config (public by design: it names the project, it grants
    # nothing), for the console's Google sign-in. JSON in the environment.
    firebase_web_config: Annotated[dict[str, str] | None, NoDecode] = Field(
        default=None, validation_alias="FIREBASE_WEB_CONFIG"
    )
    files_bucket: str = Field(default=FILES_BUCKET, validation_alias="FILES_BUCKET")
    # The Cloud Storage emulator (the standard client variable), checked at start.
    storage_emulator_host: str | None = Field(
        default=None, validation_alias="STORAGE_EMULATOR_HOST"
    )
    # In MiB in the environment (MAX_UPLOAD_MB, MAX_WORKSPACE_MB: see _MIB_VARIABLES).
    max_upload_bytes: int = Field(default=MAX_UPLOAD_BYTES, validation_alias="MAX_UPLOAD_MB")
    max_workspace_bytes: int = Field(
        default=MAX_WORKSPACE_BYTES, validation_alias="MAX_WORKSPACE_MB"
    )
    storage_retry_seconds: float = Field(
        default=STORAGE_RETRY_SECONDS, validation_alias="STORAGE_RETRY_SECONDS"
    )
    user_requests_per_second: float = Field(
        default=USER_REQUESTS_PER_SECOND, validation_alias="USER_REQUESTS_PER_SECOND"
    )
    user_request_burst: int = Field(
        default=USER_REQUEST_BURST, validation_alias="USER_REQUEST_BURST"
    )
    webhook_allow_loopback: bool = Field(default=False, validation_alias="WEBHOOK_ALLOW_LOOPBACK")
    webhook_retry_hours: float = Field(
        default=WEBHOOK_RETRY_HOURS, validation_alias="WEBHOOK_RETRY_HOURS"
    )
    webhook_first_retry_seconds: float = Field(
        default=WEBHOOK_FIRST_RETRY_SECONDS, validation_alias="WEBHOOK_FIRST_RETRY_SECONDS"
    )
    # The ceiling of tasks' `network.allow` (comma-separated host patterns; `*` is any
    # domain; empty: no egress by domain at all).
    egress_allowed_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="EGRESS_ALLOWED_DOMAINS"
    )
    # Local development: hosts on a task's list mapped to loopback stand-ins
    # (`api.test=127.0.0.1:8092,...`), handed to the runner in the task's spec.
    egress_dev_hosts: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, validation_alias="EGRESS_DEV_HOSTS"
    )
    egress_max_connections: int = Field(
        default=EGRESS_MAX_CONNECTIONS, validation_alias="EGRESS_MAX_CONNECTIONS"
    )
    egress_max_mb: int = Field(default=EGRESS_MAX_MB, validation_alias="EGRESS_MAX_MB")
    # User secrets: sealed under a Cloud KMS key (production), or under a key derived
    # from SECRETS_KEY (local; random per process when unset, like TASK_TOKEN_KEY).
    secrets_kms_key: str | None = Field(default=None, validation_alias="SECRETS_KMS_KEY")
    secrets_key: bytes = Field(
        default_factory=lambda: secrets.token_bytes(32),
        validation_alias="SECRETS_KEY",
        repr=False,
    )
    kms_endpoint: str = Field(
        default="https://cloudkms.googleapis.com", validation_alias="KMS_ENDPOINT"
    )
    max_secrets_per_user: int = Field(
        default=MAX_SECRETS_PER_USER, validation_alias="MAX_SECRETS_PER_USER"
    )
    max_secret_bytes: int = Field(default=MAX_SECRET_BYTES, validation_alias="MAX_SECRET_BYTES")
    # Custom environments: built from PACKAGE_INDEX_URL, whose hosts (and the hosts its
    # files come from) are the build's only egress, PACKAGE_INDEX_DOMAINS.
    package_index_url: str = Field(default=PACKAGE_INDEX_URL, validation_alias="PACKAGE_INDEX_URL")
    package_index_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        default=PACKAGE_INDEX_DOMAINS, validation_alias="PACKAGE_INDEX_DOMAINS"
    )
    npm_registry_url: str = Field(default=NPM_REGISTRY_URL, validation_alias="NPM_REGISTRY_URL")
    npm_registry_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        default=NPM_REGISTRY_DOMAINS, validation_alias="NPM_REGISTRY_DOMAINS"
    )
    max_environments_per_user: int = Field(
        default=MAX_ENVIRONMENTS_PER_USER, ge=1, validation_alias="MAX_ENVIRONMENTS_PER_USER"
    )
    environment_max_mb: int = Field(
        default=ENVIRONMENT_MAX_MB, ge=1, validation_alias="ENVIRONMENT_MAX_MB"
    )
    environment_build_seconds: int = Field(
        default=ENVIRONMENT_BUILD_SECONDS,
        ge=MIN_TIMEOUT_SECONDS,
        le=MAX_TIMEOUT_SECONDS,
        validation_alias="ENVIRONMENT_BUILD_SECONDS",
    )
    task_retention_days: int = Field(
        default=TASK_RETENTION_DAYS, ge=1, validation_alias="TASK_RETENTION_DAYS"
    )
    firestore_deadline_seconds: float = Field(
        default=FIRESTORE_DEADLINE_SECONDS, validation_alias="FIRESTORE_DEADLINE_SECONDS"
    )
    request_header_seconds: float = Field(
        default=REQUEST_HEADER_SECONDS, validation_alias="REQUEST_HEADER_SECONDS"
    )
    request_body_idle_seconds: float = Field(
        default=REQUEST_BODY_IDLE_SECONDS, validation_alias="REQUEST_BODY_IDLE_SECONDS"
    )
    response_write_idle_seconds: float = Field(
        default=RESPONSE_WRITE_IDLE_SECONDS, validation_alias="RESPONSE_WRITE_IDLE_SECONDS"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only from_env reads the environment: Settings(...) in a test is what it says.
        return (init_settings,)

    @classmethod
    def variables(cls) -> frozenset[str]:
        """The environment variables the settings read (README's configuration table)."""
        return frozenset(
            field.validation_alias
            for field in cls.model_fields.values()
            if isinstance(field.validation_alias, str)
        )

    @classmethod
    def from_env(cls) -> Settings:
        read = EnvSettingsSource(cls)()
        # The source also answers to a field's own name (validate_by_name): only the
        # documented variables count.
        environment = {name: value for name, value in read.items() if name in cls.variables()}
        if "TASK_TOKEN_KEY" not in environment and "TASK_TOKEN_KEY_SECRET" in environment:
            from api.adapters.secrets import read_secret

            environment["TASK_TOKEN_KEY"] = read_secret(environment["TASK_TOKEN_KEY_SECRET"])
        settings = cls(**environment, on_cloud_run=bool(os.environ.get("K_SERVICE")))
        if settings.public_url is None:
            settings = settings.model_copy(
                update={"public_url": f"http://127.0.0.1:{settings.port}"}
            )
        return settings

    @model_validator(mode="before")
    @classmethod
    def _from_mib(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for variable, name in _MIB_VARIABLES.items():
                if variable in data:
                    data = {**data}
                    raw = data.pop(variable)
                    try:
                        data[name] = int(raw) * MIB
                    except ValueError:
                        raise ValueError(f"{variable} must be an integer, got {raw!r}") from None
        return data

    @field_validator("allowed_models", "helper_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(model.strip() for model in value.split(",") if model.strip())
        return value

    @field_validator("package_index_domains", "npm_registry_domains", mode="before")
    @classmethod
    def _index_domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            from api.services.egress import normalize_pattern

            return tuple(normalize_pattern(p.strip()) for p in value.split(",") if p.strip())
        return value

    @field_validator("egress_allowed_domains", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            from api.services.egress import ANY_DOMAIN, normalize_pattern

            patterns = (p.strip() for p in value.split(",") if p.strip())
            return tuple(p if p == ANY_DOMAIN else normalize_pattern(p) for p in patterns)
        return value

    @field_validator("egress_dev_hosts", mode="before")
    @classmethod
    def _dev_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_dev_hosts(value)
        return value

    @field_validator("model_prices", mode="before")
    @classmethod
    def _price_table(cls, value: Any) -> Any:
        return _model_prices(value) if isinstance(value, str) else value

    @field_validator("firebase_web_config", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        return _firebase_web_config(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.executor not in ("local", "cloudrun"):
            raise ValueError(f"EXECUTOR must be 'local' or 'cloudrun', got {self.executor!r}")
        if self.executor == "cloudrun" and not self.cloud_run_job:
            raise ValueError(
                "EXECUTOR=cloudrun needs CLOUD_RUN_JOB=projects/P/locations/L/jobs/J "
                "(the job-runner job; see README, 'Running tasks on Cloud Run')."
            )
        if self.run_job_launches_per_minute < 1:
            raise ValueError("RUN_JOB_LAUNCHES_PER_MINUTE must be at least 1.")
        if self.default_model not in self.allowed_models:
            raise ValueError(
                f"DEFAULT_MODEL={self.default_model!r} is not in ALLOWED_MODELS "
                f"({', '.join(self.allowed_models)})."
            )
        if self.webhook_allow_loopback and self.on_cloud_run:
            raise ValueError(
                "WEBHOOK_ALLOW_LOOPBACK is for local development and is refused on Cloud Run "
                "(K_SERVICE is set)."
            )
        if self.egress_dev_hosts and self.on_cloud_run:
            raise ValueError(
                "EGRESS_DEV_HOSTS is for local development and is refused on Cloud Run "
                "(K_SERVICE is set)."
            )
        if self.sandbox not in SANDBOXES:
            raise ValueError(f"SANDBOX must be one of {', '.join(SANDBOXES)}, got {self.sandbox!r}")
        modes = self.auth_modes
        if not (modes == {"dev"} or (modes and modes <= {"firebase", "apikey"})):
            raise ValueError(
                f"AUTH_MODE must be 'dev', 'firebase', 'apikey' or 'firebase,apikey', "
                f"got {self.auth_mode!r}."
            )
        if "dev" in modes and self.on_cloud_run:
            raise ValueError(
                "AUTH_MODE=dev trusts the X-User-Id header and is refused on Cloud Run "
                "(K_SERVICE is set): set AUTH_MODE=firebase, apikey or firebase,apikey."
            )
        return self

    @property
    def auth_modes(self) -> frozenset[str]:
        """AUTH_MODE as a set: `firebase,apikey` and `apikey,firebase` are the same."""
        return frozenset(part.strip() for part in self.auth_mode.split(","))
