"""The agent platform's API: a stateless Flask app (DESIGN sections 3 and 6).

`create_app` composes four pieces: the services built from the settings
(`build_services`), the routes (`register_routes`), the error handlers and CLI, and
the background work (`start_background_work`)."""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api import config
from api.config import Settings
from api.routes.common import FilePathConverter

if TYPE_CHECKING:
    from api.adapters.executors.base import Executor
    from api.adapters.file_store import FileStore
    from api.adapters.firestore_store import FirestoreStore
    from api.adapters.llm import AnthropicUpstream
    from api.services.agents import AgentService
    from api.services.auth import ApiKeyService, Authenticator
    from api.services.conversations import ConversationService
    from api.services.dispatcher import Dispatcher
    from api.services.environments import EnvironmentService
    from api.services.files import FileService
    from api.services.launch_rate import LaunchRate
    from api.services.llm_budget import LlmBudget
    from api.services.llm_proxy import LlmProxy
    from api.services.request_rate import RequestRate
    from api.services.runner import RunnerService
    from api.services.state_machine import TaskStateMachine
    from api.services.task_watch import TaskWatch
    from api.services.tasks import TaskService
    from api.services.user_secrets import UserSecretService
    from api.services.webhooks import WebhookService


@dataclass
class Services:
    """Everything the routes use, built once per app from the settings
    (`api.routes.common.services()` returns it)."""

    settings: Settings
    store: FirestoreStore
    machine: TaskStateMachine
    executor: Executor
    dispatcher: Dispatcher
    tasks: TaskService
    watch: TaskWatch
    agents: AgentService
    conversations: ConversationService
    upstream: AnthropicUpstream
    llm_proxy: LlmProxy
    auth: Authenticator
    api_keys: ApiKeyService
    files: FileService
    request_rate: RequestRate
    webhooks: WebhookService
    runner: RunnerService
    secrets: UserSecretService
    environments: EnvironmentService


def create_app(
    settings: Settings | None = None,
    *,
    store: FirestoreStore | None = None,
    executor: Executor | None = None,
    file_store: FileStore | None = None,
    start_background: bool | None = None,
) -> Flask:
    """Build the app. Tests pass `settings`, `store`, `executor` or `file_store` to override the
    ones the environment would choose. The background dispatcher starts unless
    `start_background` is False, or the app is built for a `flask` CLI command
    (`flask --app api keys ...`; see api/cli.py)."""
    from api import cli, errors
    from api.logging_setup import configure_logging
    from api.routes import common

    settings = settings or Settings.from_env()
    configure_logging(settings.project)
    app = Flask(__name__)
    app.url_map.converters["path"] = FilePathConverter
    app.config["MAX_CONTENT_LENGTH"] = config.MAX_BODY_BYTES
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    services = build_services(settings, store=store, executor=executor, file_store=file_store)
    app.extensions["agent_platform"] = services
    errors.init_app(app)
    cli.init_app(app)
    common.init_app(app)  # every public route authenticates unless marked public
    register_routes(app)
    if start_background is None:
        start_background = not cli.loading_for_a_command()
    if start_background:
        start_background_work(services)
    return app


def build_services(
    settings: Settings,
    *,
    store: FirestoreStore | None = None,
    executor: Executor | None = None,
    file_store: FileStore | None = None,
) -> Services:
    """Every service, each built once from the settings; the tasks' side first."""
    from api.adapters.executors import make_executor
    from api.adapters.firestore_store import FirestoreStore
    from api.adapters.llm import AnthropicUpstream
    from api.services.state_machine import IN_FLIGHT, TaskStateMachine
    from api.services.task_watch import TaskWatch

    store = store or FirestoreStore(
        settings.project, deadline_seconds=settings.firestore_deadline_seconds
    )
    machine = TaskStateMachine(
        store,
        runner_overhead_seconds=config.RUNNER_OVERHEAD_SECONDS,
        heartbeat_grace_seconds=settings.heartbeat_grace_seconds,
        claim_grace_seconds=config.CLAIM_GRACE_SECONDS,
    )
    executor = executor or make_executor(
        settings, count_in_flight=lambda: store.count_tasks_with_status(IN_FLIGHT)
    )
    watch = TaskWatch()
    dispatcher = _dispatcher(settings, machine, executor, watch)
    upstream = AnthropicUpstream(
        api_key=settings.anthropic_api_key,
        api_key_secret=settings.anthropic_api_key_secret,
        base_url=settings.anthropic_base_url,
    )
    return _with_public_services(
        settings, store, machine, executor, dispatcher, watch, upstream, file_store
    )


def _dispatcher(
    settings: Settings, machine: TaskStateMachine, executor: Executor, watch: TaskWatch
) -> Dispatcher:
    from api.services.dispatcher import Dispatcher

    dispatcher = Dispatcher(
        machine,
        executor,
        token_key=settings.task_token_key,
        runner_overhead_seconds=config.RUNNER_OVERHEAD_SECONDS,
        interval_seconds=settings.reconcile_interval_seconds,
        on_change=watch.changed,
        launch_in_request=(
            settings.dispatch_inline
            if settings.dispatch_inline is not None
            else executor.backend == "cloudrun"
        ),
        max_running_per_owner=settings.max_active_tasks_per_user,
        launch_rate=_launch_rate(settings, machine, executor),
        small_job_max_memory_mb=settings.small_job_max_task_memory_mb,
        max_queued_seconds=settings.max_queued_seconds,
    )
    # The executor needs no dispatcher to be built: it is told where to report a
    # runner's exit once the dispatcher exists.
    executor.notify_exits(dispatcher.runner_exited)
    return dispatcher


def _launch_rate(
    settings: Settings, machine: TaskStateMachine, executor: Executor
) -> LaunchRate | None:
    """The fleet-wide RunJob rate, shared through Firestore (Cloud Run only)."""
    if executor.backend != "cloudrun":
        return None
    from api.services.launch_rate import LaunchRate

    return LaunchRate(machine.store, settings.run_job_launches_per_minute)


def _with_public_services(
    settings: Settings,
    store: FirestoreStore,
    machine: TaskStateMachine,
    executor: Executor,
    dispatcher: Dispatcher,
    watch: TaskWatch,
    upstream: AnthropicUpstream,
    file_store: FileStore | None,
) -> Services:
    """The services the routes call, around the task machinery."""
    from api.adapters.file_store import GcsFileStore
    from api.services.agents import AgentService
    from api.services.conversations import ConversationService
    from api.services.files import FileService
    from api.services.request_rate import RequestRate
    from api.services.runner import RunnerService

    secrets = _user_secrets(settings, store)
    tasks, webhooks = _task_service(settings, store, machine, dispatcher, watch, upstream, secrets)
    agents = AgentService(
        store, default_model=settings.default_model, allowed_models=settings.allowed_models
    )
    file_store = file_store or GcsFileStore(
        settings.files_bucket, settings.project, retry_seconds=settings.storage_retry_seconds
    )
    files = FileService(store, file_store, max_upload_bytes=settings.max_upload_bytes)
    environments = _environments(settings, store, tasks, agents, file_store)
    conversations = ConversationService(store, tasks, agents, files)
    auth, api_keys = _identity(settings, store)
    llm_proxy = _llm_proxy(settings, store, upstream)
    return Services(
        settings=settings,
        store=store,
        machine=machine,
        executor=executor,
        dispatcher=dispatcher,
        tasks=tasks,
        watch=watch,
        agents=agents,
        conversations=conversations,
        upstream=upstream,
        llm_proxy=llm_proxy,
        auth=auth,
        api_keys=api_keys,
        files=files,
        request_rate=RequestRate(settings.user_requests_per_second, settings.user_request_burst),
        webhooks=webhooks,
        runner=RunnerService(
            settings,
            machine,
            dispatcher,
            watch,
            files,
            conversations,
            webhooks,
            secrets,
            environments,
            llm_budget=llm_proxy.budget,
        ),
        secrets=secrets,
        environments=environments,
    )


def _environments(
    settings: Settings,
    store: FirestoreStore,
    tasks: TaskService,
    agents: AgentService,
    file_store: FileStore,
) -> EnvironmentService:
    """Custom environments, which tasks and agents name (api/services/environments.py)."""
    from api.services.environments import EnvironmentService

    environments = EnvironmentService(store, tasks, file_store, settings)
    tasks.resolve_environment = environments.resolve
    agents.environment_exists = environments.exists
    return environments


def _user_secrets(settings: Settings, store: FirestoreStore) -> UserSecretService:
    """User secrets, sealed under the Cloud KMS key where one is set (ADR 0016)."""
    from api.adapters.secret_box import KmsKeyWrapper, LocalKeyWrapper, SecretBox
    from api.services.user_secrets import UserSecretService

    wrapper = (
        KmsKeyWrapper(settings.secrets_kms_key, settings.kms_endpoint)
        if settings.secrets_kms_key
        else LocalKeyWrapper(settings.secrets_key)
    )
    return UserSecretService(
        store,
        SecretBox(wrapper),
        max_count=settings.max_secrets_per_user,
        max_bytes=settings.max_secret_bytes,
    )


def _task_service(
    settings: Settings,
    store: FirestoreStore,
    machine: TaskStateMachine,
    dispatcher: Dispatcher,
    watch: TaskWatch,
    upstream: AnthropicUpstream,
    secrets: UserSecretService,
) -> tuple[TaskService, WebhookService]:
    """Tasks as clients see them, with their admission limits, access and webhooks."""
    from api.models.responses import Task
    from api.services.admission import TaskAdmission
    from api.services.task_access import TaskAccessRules
    from api.services.tasks import TaskService
    from api.services.webhooks import WebhookService

    access = TaskAccessRules(
        secrets,
        allow_network=settings.allow_task_network,
        allowed_domains=settings.egress_allowed_domains,
    )
    webhooks = WebhookService(
        store,
        render_task=lambda task: Task.of(task).body(),
        allow_loopback=settings.webhook_allow_loopback,
        retry_hours=settings.webhook_retry_hours,
        first_retry_seconds=settings.webhook_first_retry_seconds,
    )
    admission = TaskAdmission(
        store,
        max_unsettled=settings.max_unsettled_tasks_per_user,
        max_per_day=settings.max_tasks_per_user_per_day,
        max_active=settings.max_active_tasks_per_user,
        daily_token_budget=settings.user_daily_token_budget,
        daily_cost_budget_usd=settings.user_daily_cost_budget_usd,
    )
    tasks = TaskService(
        machine,
        dispatcher,
        watch,
        allow_network=settings.allow_task_network,
        max_pending=settings.max_pending_tasks,
        llm_configured=upstream.configured,
        admission=admission,
        check_webhook_url=webhooks.check_url,
        check_access=access.check,
        retention_days=settings.task_retention_days,
    )
    return tasks, webhooks


def _identity(settings: Settings, store: FirestoreStore) -> tuple[Authenticator, ApiKeyService]:
    from api.adapters.firebase_certs import FirebaseCerts
    from api.services.auth import ApiKeyService, Authenticator, FirebaseTokenVerifier

    api_keys = ApiKeyService(store)
    firebase = FirebaseTokenVerifier(settings.project, FirebaseCerts(settings.firebase_certs_url))
    return Authenticator(settings.auth_modes, firebase=firebase, api_keys=api_keys), api_keys


def _llm_proxy(settings: Settings, store: FirestoreStore, upstream: AnthropicUpstream) -> LlmProxy:
    from api.services.llm_pricing import PriceTable
    from api.services.llm_proxy import LlmProxy

    return LlmProxy(
        store,
        upstream,
        _llm_budget(settings, store),
        PriceTable(settings.model_prices),
        token_key=settings.task_token_key,
        allowed_models=settings.allowed_models,
        helper_models=settings.helper_models,
        count_tokens_per_minute=settings.count_tokens_per_task_per_minute,
    )


def _llm_budget(settings: Settings, store: FirestoreStore) -> LlmBudget:
    from api.services.llm_budget import LlmBudget

    return LlmBudget(
        store,
        daily_tokens=settings.user_daily_token_budget,
        daily_cost_usd=settings.user_daily_cost_budget_usd,
        in_flight_per_task=settings.llm_calls_in_flight_per_task,
    )


def register_routes(app: Flask) -> None:
    """Every blueprint: the public API, the console, and the runner's internal routes."""
    from api.routes import (
        agents,
        console,
        conversations,
        deployment,
        environments,
        files,
        health,
        internal,
        internal_files,
        keys,
        openapi,
        secrets,
        tasks,
        usage,
        webhooks,
    )

    for module in (
        health,
        tasks,
        internal,
        internal_files,
        files,
        agents,
        conversations,
        openapi,
        usage,
        keys,
        deployment,
        console,
        webhooks,
        secrets,
        environments,
    ):
        app.register_blueprint(module.bp)


def start_background_work(services: Services) -> None:
    """The dispatcher's loop, webhook deliveries and the LLM connection's warm-up;
    stopped when the process exits."""
    settings = services.settings
    services.dispatcher.start()
    services.webhooks.start(interval=min(settings.reconcile_interval_seconds, 2.0))
    services.llm_proxy.budget.start(interval=settings.reconcile_interval_seconds)
    threading.Thread(target=services.upstream.warm_up, name="llm-warm-up", daemon=True).start()

    def shutdown() -> None:
        services.webhooks.stop()
        services.llm_proxy.budget.stop()
        services.dispatcher.stop()
        services.executor.shutdown()

    atexit.register(shutdown)
