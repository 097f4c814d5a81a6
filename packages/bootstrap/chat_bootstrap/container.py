"""The composition root: the only module that knows every adapter.

Read it top-down as the dependency graph. Each port has one provider; where a port
has several adapters, a Selector on a setting picks one, so swapping RabbitMQ for
the in-memory broker is a configuration change, never a code change.

Building a provider never connects: clients are Singletons that connect lazily. What
must be opened and closed has a Resource under "lifecycles", which
``container.init_resources()`` / ``shutdown_resources()`` run (chat_bootstrap.runtime).
A Resource is never an option of a Selector: the container starts every Resource it
can reach, so each one wraps whichever client its Selector picked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import socketio
from dependency_injector import containers, providers

from chat_adapters.admission import LocalAdmission
from chat_adapters.memory.broker import InMemoryBroker
from chat_adapters.memory.presence import InMemoryPresenceTracker
from chat_adapters.memory.rate_limit import InMemoryRateLimiter
from chat_adapters.memory.worker_group import InMemoryWorkerGroup
from chat_adapters.metered import MeteredBroker, MeteredNotifier
from chat_adapters.rabbitmq.broker import RabbitMQBroker
from chat_adapters.redis.presence import RedisPresenceTracker
from chat_adapters.redis.rate_limit import RedisRateLimiter
from chat_adapters.redis.worker_group import RedisWorkerGroup
from chat_adapters.security.passwords import Argon2PasswordHasher
from chat_adapters.security.seed_tokens import JwtSeedTokenService
from chat_adapters.security.tokens import JwtTokenService
from chat_adapters.socketio.fan_out import InlineFanOutManager
from chat_adapters.socketio.json import OrjsonForSocketIO
from chat_adapters.socketio.notifier import SocketIONotifier
from chat_adapters.socketio.redis_manager import SupervisedRedisManager
from chat_adapters.sql.engine import create_engine
from chat_adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory
from chat_adapters.sql.webhook_events import SqlAlchemyPendingWebhookEvents
from chat_adapters.system import SystemClock, UuidGenerator
from chat_adapters.webhooks.memory import InMemoryWebhookOutbox
from chat_adapters.webhooks.metered import (
    MeteredPendingWebhookEvents,
    MeteredWebhookOutbox,
    MeteredWebhookSender,
)
from chat_adapters.webhooks.rabbitmq import RabbitMQWebhookOutbox
from chat_adapters.webhooks.sender import AiohttpWebhookSender
from chat_bootstrap import app_auth, lifecycles
from chat_bootstrap.settings import Settings
from chat_domain.ports.presence import PresenceTracker
from chat_domain.ports.rate_limit import RateRule
from chat_domain.ports.webhooks import WebhookEndpoint
from chat_domain.ports.worker_group import BalancePolicy
from chat_domain.usecases.accounts import (
    DeactivateUser,
    FindEndedSessions,
    ReactivateUser,
    ResetPassword,
)
from chat_domain.usecases.administration import ListAllRooms, PruneMessages
from chat_domain.usecases.api_keys import (
    AuthenticateApiKey,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
)
from chat_domain.usecases.app_users import AuthenticateWithApp, ProvisionAppUser
from chat_domain.usecases.auth import Authenticate, LogIn, RegisterUser, SearchUsers
from chat_domain.usecases.blocks import BlockUser, ListBlocks, UnblockUser
from chat_domain.usecases.consuming import MessageConsumer
from chat_domain.usecases.dead_letters import ListDeadLetters, ReplayDeadLetters
from chat_domain.usecases.messages import (
    DeleteMessage,
    EditMessage,
    ListHistory,
    SendMessage,
    StoreMessages,
)
from chat_domain.usecases.presence import ConnectSocket, DisconnectSocket
from chat_domain.usecases.receipts import ListReceipts, MoveMarker
from chat_domain.usecases.rooms import (
    AddMember,
    CreateGroupRoom,
    GetRoom,
    ListRooms,
    OpenDirectRoom,
    RelayTyping,
    RemoveMember,
    TransferOwnership,
)
from chat_domain.usecases.seed_compat import (
    IssueSeedToken,
    JoinSeedRoom,
    ListSeedClients,
    NameSeedSenders,
    OpenSeedSession,
    SeedDirectory,
    SeedRoomPresence,
    SendSeedMessage,
)
from chat_domain.usecases.server_api import (
    CreateServerRoom,
    PostServerMessage,
    ReadRoomHistory,
    SetRoomMembers,
)
from chat_domain.usecases.webhook_relay import WebhookRelay
from chat_domain.usecases.webhooks import WebhookAnnouncements, WebhookDispatcher, endpoints_of

socketio_logger = logging.getLogger("chat.socketio")
# engine.io's and python-socketio's own records: they log every packet at INFO, so only
# warnings and errors, through the process's handler (with logger=False each added a
# handler of its own, and every traceback was written twice).
transport_logger = logging.getLogger("chat.transport")
transport_logger.setLevel(logging.WARNING)


def _origins_or_same_origin(origins: list[str]) -> list[str] | None:
    # engine.io reads [] as "CORS handling off", which lets every web page open a socket;
    # None is "same origin only", the safe default when no origin is configured.
    return list(origins) or None


def _webhook_endpoints(settings: Settings) -> list[WebhookEndpoint]:
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    return endpoints_of(settings.webhook_urls, secret)


def _presence_for_webhooks(
    endpoints: list[WebhookEndpoint], presence: Callable[[], PresenceTracker]
) -> PresenceTracker | None:
    # Built (and so closed) only where it is asked: a worker with subscribers.
    return presence() if endpoints else None


ROLES = ("server", "worker", "admin")


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    # "server" (REST + sockets), "worker" (consumer only) or "admin" (the operators'
    # commands: `chat migrate` and the others open just ``database``, `chat dead-letters`
    # just ``admin_broker``): decides how events are emitted and what is opened.
    role = providers.Dependency(instance_of=str)

    # --- system ---------------------------------------------------------------------
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidGenerator)
    hasher = providers.Singleton(Argon2PasswordHasher)
    tokens = providers.Singleton(
        JwtTokenService,
        secret_key=settings.provided.signing_key.call(),
        clock=clock,
        ttl_seconds=settings.provided.token_ttl_seconds,
    )
    # The app's tokens (CHAT_AUTH_MODE app or both; None with accounts only).
    app_tokens = providers.Singleton(app_auth.app_token_verifier, settings=settings, clock=clock)

    # --- storage: one SQLAlchemy adapter for SQLite and PostgreSQL --------------------
    engine = providers.Singleton(
        create_engine,
        url=settings.provided.database_url,
        pool_size=settings.provided.database_pool_size,
    )
    uow = providers.Singleton(SqlAlchemyUnitOfWorkFactory, engine=engine, clock=clock)

    # --- broker ---------------------------------------------------------------------
    # The workers sharing the partitions: alone in one process, or every worker through
    # Redis (workers have Redis anyway, for the fan-out); docs/scaling.md.
    balance_policy = providers.Singleton(
        BalancePolicy,
        by_load=providers.Callable("load".__eq__, settings.provided.worker_balance),
        tolerance=settings.provided.worker_balance_tolerance,
        interval_seconds=settings.provided.worker_balance_seconds,
    )
    worker_group = providers.Selector(
        settings.provided.socketio_manager,
        local=providers.Singleton(
            InMemoryWorkerGroup,
            lease_seconds=settings.provided.worker_lease_seconds,
            policy=balance_policy,
        ),
        redis=providers.Singleton(
            RedisWorkerGroup,
            url=settings.provided.redis_url,
            name=settings.provided.rabbitmq_prefix,
            lease_seconds=settings.provided.worker_lease_seconds,
            policy=balance_policy,
        ),
    )
    broker_adapter = providers.Selector(
        settings.provided.broker,
        memory=providers.Singleton(
            InMemoryBroker, max_attempts=settings.provided.rabbitmq_max_attempts
        ),
        rabbitmq=providers.Singleton(
            RabbitMQBroker,
            url=settings.provided.rabbitmq_url,
            prefix=settings.provided.rabbitmq_prefix,
            partitions=settings.provided.rabbitmq_partitions,
            max_attempts=settings.provided.rabbitmq_max_attempts,
            publish_timeout=settings.provided.broker_publish_timeout,
            ack_delay=settings.provided.rabbitmq_ack_delay_seconds,
            group=worker_group,
        ),
    )
    # Every caller gets the adapter behind a metered wrapper (publish and consume metrics).
    broker = providers.Singleton(MeteredBroker, inner=broker_adapter, clock=clock)

    # --- realtime: socket.io, local or across nodes through Redis ---------------------
    socketio_json = providers.Object(OrjsonForSocketIO)
    socketio_manager = providers.Selector(
        settings.provided.socketio_manager,
        local=providers.Singleton(InlineFanOutManager),
        redis=providers.Singleton(
            SupervisedRedisManager,
            url=settings.provided.redis_url,
            channel=settings.provided.redis_channel,
            targeted=settings.provided.socketio_targeted_delivery,
            logger=socketio_logger,
            json=socketio_json,
        ),
    )
    socketio_server = providers.Singleton(
        socketio.AsyncServer,
        async_mode="asgi",
        client_manager=socketio_manager,
        json=socketio_json,
        cors_allowed_origins=providers.Callable(
            _origins_or_same_origin, settings.provided.cors_origins
        ),
        # A bigger packet closes that client's connection (engine.io), never the server.
        max_http_buffer_size=settings.provided.socketio_max_packet_bytes,
        logger=transport_logger,
        engineio_logger=transport_logger,
    )
    # A worker has no sockets of its own: it publishes through a write-only manager.
    write_only_manager = providers.Singleton(
        SupervisedRedisManager,
        url=settings.provided.redis_url,
        channel=settings.provided.redis_channel,
        targeted=settings.provided.socketio_targeted_delivery,
        write_only=True,
        logger=socketio_logger,
        json=socketio_json,
    )
    socketio_emitter = providers.Selector(role, server=socketio_server, worker=write_only_manager)
    # The manager this process fans out through, whose Redis client is closed at exit.
    fan_out_manager = providers.Selector(role, server=socketio_manager, worker=write_only_manager)
    notifier = providers.Singleton(
        MeteredNotifier, inner=providers.Singleton(SocketIONotifier, emitter=socketio_emitter)
    )

    # --- rate limits: per node in memory, or across nodes in Redis --------------------
    rate_limiter = providers.Selector(
        settings.provided.rate_limit_backend,
        memory=providers.Singleton(InMemoryRateLimiter),
        redis=providers.Singleton(
            RedisRateLimiter,
            url=settings.provided.redis_url,
            prefix=providers.Callable("{}:rate".format, settings.provided.redis_channel),
        ),
    )
    send_rate = providers.Singleton(
        RateRule,
        name="send",
        per_second=settings.provided.rate_send_per_second,
        burst=settings.provided.rate_send_burst,
    )
    typing_rate = providers.Singleton(
        RateRule,
        name="typing",
        per_second=settings.provided.rate_typing_per_second,
        burst=settings.provided.rate_typing_burst,
    )
    receipt_rate = providers.Singleton(
        RateRule,
        name="receipt",
        per_second=settings.provided.rate_receipt_per_second,
        burst=settings.provided.rate_receipt_burst,
    )
    login_rate = providers.Singleton(
        RateRule.per_minute,
        name="login",
        per_minute=settings.provided.rate_login_per_minute,
        burst=settings.provided.rate_login_burst,
    )
    auth_address_rate = providers.Singleton(
        RateRule.per_minute,
        name="auth-address",
        per_minute=settings.provided.rate_auth_per_address_per_minute,
        burst=settings.provided.rate_auth_per_address_burst,
    )
    server_api_rate = providers.Singleton(
        RateRule,
        name="server-api",
        per_second=settings.provided.rate_server_api_per_second,
        burst=settings.provided.rate_server_api_burst,
    )
    connect_rate = providers.Singleton(
        RateRule.per_minute,
        name="connect",
        per_minute=settings.provided.rate_connect_per_minute,
        burst=settings.provided.rate_connect_burst,
    )

    # Who is online: in-process with the local manager, shared through Redis across nodes.
    presence = providers.Selector(
        settings.provided.socketio_manager,
        local=providers.Singleton(InMemoryPresenceTracker),
        redis=providers.Singleton(
            RedisPresenceTracker,
            url=settings.provided.redis_url,
            prefix=settings.provided.redis_channel,
        ),
    )

    # --- webhooks: an outbox beside the broker, a dispatcher that POSTs (docs/webhooks.md)
    webhook_endpoints = providers.Singleton(_webhook_endpoints, settings)
    webhook_outbox_adapter = providers.Selector(
        settings.provided.broker,
        memory=providers.Singleton(InMemoryWebhookOutbox),
        rabbitmq=providers.Singleton(
            RabbitMQWebhookOutbox,
            url=settings.provided.rabbitmq_url,
            prefix=settings.provided.rabbitmq_prefix,
            prefetch=settings.provided.webhook_prefetch,
            publish_timeout=settings.provided.broker_publish_timeout,
        ),
    )
    # Callers get both behind metered wrappers (announced, attempts, dead letters).
    webhook_outbox = providers.Singleton(MeteredWebhookOutbox, inner=webhook_outbox_adapter)
    webhook_sender = providers.Singleton(
        MeteredWebhookSender,
        inner=providers.Singleton(
            AiohttpWebhookSender, timeout=settings.provided.webhook_timeout_seconds
        ),
    )
    # Edits, deletes and membership changes record their events in their transaction
    # (the webhook_outbox table); each server's relay moves them to the outbox, at once
    # after its own commits and every interval for the rest.
    pending_webhook_events = providers.Singleton(
        MeteredPendingWebhookEvents,
        inner=providers.Singleton(SqlAlchemyPendingWebhookEvents, engine=engine),
    )
    webhook_relay = providers.Singleton(
        WebhookRelay,
        pending=pending_webhook_events,
        outbox=webhook_outbox,
        interval=settings.provided.webhook_relay_interval_seconds,
    )
    webhook_announcements = providers.Singleton(
        WebhookAnnouncements,
        outbox=webhook_outbox,
        presence=presence,
        clock=clock,
        ids=ids,
        endpoints=webhook_endpoints,
        relay_soon=webhook_relay.provided.nudge,
    )
    # One per process that consumes (the worker's, or the server's in embedded mode).
    webhook_dispatcher = providers.Singleton(
        WebhookDispatcher,
        outbox=webhook_outbox,
        sender=webhook_sender,
        endpoints=webhook_endpoints,
        max_attempts=settings.provided.webhook_max_attempts,
        retry_base=settings.provided.webhook_retry_base_seconds,
        retry_max=settings.provided.webhook_retry_max_seconds,
    )

    # --- lifecycles: opened by init_resources, closed by shutdown_resources ----------
    # Trailing arguments order them (chat_bootstrap.lifecycles): the broker starts after,
    # and closes before, the database and the fan-out, so the message in hand is still
    # stored and fanned out. Presence and the limiter serve sockets: servers only.
    database = providers.Resource(
        lifecycles.database, engine, migrate_first=settings.provided.auto_migrate
    )
    fan_out = providers.Resource(lifecycles.closing, fan_out_manager)
    no_client: providers.Object[None] = providers.Object(None)
    # A worker asks presence who is offline only for the webhooks' message.unread.
    presence_lifecycle = providers.Resource(
        lifecycles.closing,
        providers.Selector(
            role,
            server=presence,
            worker=providers.Callable(_presence_for_webhooks, webhook_endpoints, presence.provider),
        ),
    )
    rate_limiter_lifecycle = providers.Resource(
        lifecycles.closing, providers.Selector(role, server=rate_limiter, worker=no_client)
    )
    # The sender outlives the outbox (whose dispatcher may be mid-POST), and the outbox
    # the broker (a batch in hand is announced after it is stored).
    webhook_sender_lifecycle = providers.Resource(lifecycles.closing, webhook_sender)
    running_webhook_outbox = providers.Resource(
        lifecycles.running_webhook_outbox,
        webhook_outbox,
        providers.Callable(bool, webhook_endpoints),
        webhook_sender_lifecycle,
    )
    running_broker = providers.Resource(
        lifecycles.running_broker, broker, database, fan_out, running_webhook_outbox
    )
    # The relay runs in servers, which record the events (in `chat serve` alone too); it
    # stops before the outbox and the database close.
    running_webhook_relay = providers.Resource(
        lifecycles.running_webhook_relay,
        providers.Selector(role, server=webhook_relay, worker=no_client, admin=no_client),
        providers.Callable(bool, webhook_endpoints),
        running_webhook_outbox,
        database,
    )
    # The admin role's broker, alone (no database, no fan-out, nothing consumed): for
    # `chat dead-letters` to list and replay what the workers set aside. Nothing in the
    # other roles, whose broker runs above.
    admin_broker = providers.Resource(
        lifecycles.running_broker,
        providers.Selector(role, admin=broker, server=no_client, worker=no_client),
    )

    # --- use cases ------------------------------------------------------------------
    # Registrations hash in a lane of their own, so a burst of them cannot starve logins.
    registration_admission = providers.Singleton(
        LocalAdmission,
        name="registrations",
        concurrency=settings.provided.registration_concurrency,
        queue=settings.provided.registration_queue,
    )
    register_user = providers.Factory(
        RegisterUser,
        uow=uow,
        hasher=hasher,
        clock=clock,
        ids=ids,
        admission=registration_admission,
    )
    log_in = providers.Factory(
        LogIn, uow=uow, hasher=hasher, tokens=tokens, limiter=rate_limiter, attempt_rule=login_rate
    )
    provision_app_user = providers.Factory(ProvisionAppUser, uow=uow, clock=clock)
    # Singletons: they keep a cache of the users they have resolved, read again after
    # CHAT_SESSION_RECHECK_SECONDS. Our own accounts' tokens, and (CHAT_AUTH_MODE) the
    # app's: every REST call and socket connect asks ``authenticate``.
    account_authenticate = providers.Singleton(
        Authenticate,
        uow=uow,
        tokens=tokens,
        recheck_seconds=settings.provided.session_recheck_seconds,
    )
    authenticate = providers.Selector(
        settings.provided.auth_mode,
        accounts=account_authenticate,
        app=providers.Singleton(
            AuthenticateWithApp,
            uow=uow,
            app_tokens=app_tokens,
            provision=provision_app_user,
            clock=clock,
            recheck_seconds=settings.provided.session_recheck_seconds,
        ),
        both=providers.Singleton(
            AuthenticateWithApp,
            uow=uow,
            app_tokens=app_tokens,
            provision=provision_app_user,
            clock=clock,
            accounts=account_authenticate,
            recheck_seconds=settings.provided.session_recheck_seconds,
        ),
    )
    find_ended_sessions = providers.Factory(FindEndedSessions, uow=uow)
    deactivate_user = providers.Factory(DeactivateUser, uow=uow, clock=clock)
    reactivate_user = providers.Factory(ReactivateUser, uow=uow)
    reset_password = providers.Factory(ResetPassword, uow=uow, hasher=hasher)
    search_users = providers.Factory(SearchUsers, uow=uow)
    create_group_room = providers.Factory(
        CreateGroupRoom,
        uow=uow,
        notifier=notifier,
        clock=clock,
        ids=ids,
        max_members=settings.provided.max_members_per_room,
        max_rooms_per_user=settings.provided.max_rooms_per_user,
        webhooks=webhook_announcements,
    )
    open_direct_room = providers.Factory(
        OpenDirectRoom,
        uow=uow,
        notifier=notifier,
        clock=clock,
        ids=ids,
        max_rooms_per_user=settings.provided.max_rooms_per_user,
        webhooks=webhook_announcements,
    )
    get_room = providers.Factory(GetRoom, uow=uow)
    list_rooms = providers.Factory(ListRooms, uow=uow)
    add_member = providers.Factory(
        AddMember,
        uow=uow,
        notifier=notifier,
        clock=clock,
        max_members=settings.provided.max_members_per_room,
        webhooks=webhook_announcements,
    )
    remove_member = providers.Factory(
        RemoveMember, uow=uow, notifier=notifier, clock=clock, webhooks=webhook_announcements
    )
    transfer_ownership = providers.Factory(TransferOwnership, uow=uow, notifier=notifier)
    block_user = providers.Factory(BlockUser, uow=uow, notifier=notifier, clock=clock)
    unblock_user = providers.Factory(UnblockUser, uow=uow, presence=presence, notifier=notifier)
    list_blocks = providers.Factory(ListBlocks, uow=uow)
    send_message = providers.Factory(
        SendMessage,
        uow=uow,
        broker=broker,
        clock=clock,
        ids=ids,
        limiter=rate_limiter,
        rate_rule=send_rate,
    )
    # --- the seed's clients (docs/seed-compat.md): off unless CHAT_SEED_COMPAT is set --
    seed_tokens = providers.Singleton(
        JwtSeedTokenService,
        secret_key=settings.provided.signing_key.call(),
        clock=clock,
        ttl_seconds=settings.provided.token_ttl_seconds,
    )
    seed_directory = providers.Singleton(SeedDirectory, ids=ids)
    issue_seed_token = providers.Factory(
        IssueSeedToken,
        uow=uow,
        tokens=seed_tokens,
        clock=clock,
        directory=seed_directory,
        max_members=settings.provided.max_members_per_room,
    )
    join_seed_room = providers.Factory(
        JoinSeedRoom,
        uow=uow,
        clock=clock,
        directory=seed_directory,
        max_members=settings.provided.max_members_per_room,
    )
    open_seed_session = providers.Factory(
        OpenSeedSession, uow=uow, tokens=seed_tokens, directory=seed_directory
    )
    send_seed_message = providers.Factory(
        SendSeedMessage, open_session=open_seed_session, send_message=send_message
    )
    seed_room_presence = providers.Factory(
        SeedRoomPresence, uow=uow, notifier=notifier, directory=seed_directory
    )
    list_seed_clients = providers.Factory(ListSeedClients, uow=uow, directory=seed_directory)
    # One per process: it remembers the names it read.
    name_seed_senders = providers.Singleton(NameSeedSenders, uow=uow, directory=seed_directory)
    store_messages = providers.Factory(
        StoreMessages, uow=uow, notifier=notifier, webhooks=webhook_announcements
    )
    # One per process (the worker's, or the server's in embedded mode): it queues batches.
    consumer = providers.Singleton(
        MessageConsumer,
        broker=broker,
        store_messages=store_messages,
        # The worker's only: the embedded consumer answers its node's sends at once.
        linger_seconds=providers.Selector(
            role, worker=settings.provided.worker_linger_seconds, server=providers.Object(0.0)
        ),
    )
    list_history = providers.Factory(ListHistory, uow=uow)
    edit_message = providers.Factory(
        EditMessage,
        uow=uow,
        notifier=notifier,
        clock=clock,
        limiter=rate_limiter,
        rate_rule=send_rate,
        webhooks=webhook_announcements,
    )
    delete_message = providers.Factory(
        DeleteMessage, uow=uow, notifier=notifier, webhooks=webhook_announcements
    )
    move_marker = providers.Factory(
        MoveMarker, uow=uow, notifier=notifier, limiter=rate_limiter, rate_rule=receipt_rate
    )
    list_receipts = providers.Factory(ListReceipts, uow=uow)
    relay_typing = providers.Factory(
        RelayTyping, uow=uow, notifier=notifier, limiter=rate_limiter, rate_rule=typing_rate
    )
    # The server's own "stopped typing" when a client's indicator expires: not the
    # user's doing, so not charged to (nor refused by) their typing budget.
    expire_typing = providers.Factory(RelayTyping, uow=uow, notifier=notifier)
    list_all_rooms = providers.Factory(ListAllRooms, uow=uow)
    list_dead_letters = providers.Factory(ListDeadLetters, broker=broker)
    replay_dead_letters = providers.Factory(ReplayDeadLetters, broker=broker)
    prune_messages = providers.Factory(PruneMessages, uow=uow, clock=clock)
    # --- the server API (the app's backend, with API keys) ------------------------------
    create_api_key = providers.Factory(CreateApiKey, uow=uow, clock=clock, ids=ids)
    list_api_keys = providers.Factory(ListApiKeys, uow=uow)
    revoke_api_key = providers.Factory(RevokeApiKey, uow=uow, clock=clock)
    authenticate_api_key = providers.Factory(
        AuthenticateApiKey, uow=uow, limiter=rate_limiter, rate_rule=server_api_rate
    )
    create_server_room = providers.Factory(
        CreateServerRoom, uow=uow, create_group_room=create_group_room
    )
    set_room_members = providers.Factory(
        SetRoomMembers,
        uow=uow,
        notifier=notifier,
        clock=clock,
        max_members=settings.provided.max_members_per_room,
        webhooks=webhook_announcements,
    )
    # A singleton: it remembers that the system sender exists.
    post_server_message = providers.Singleton(
        PostServerMessage, uow=uow, broker=broker, clock=clock, ids=ids, send_message=send_message
    )
    read_room_history = providers.Factory(ReadRoomHistory, uow=uow)
    connect_socket = providers.Factory(ConnectSocket, uow=uow, presence=presence, notifier=notifier)
    disconnect_socket = providers.Factory(
        DisconnectSocket, uow=uow, presence=presence, notifier=notifier
    )


def build_container(settings: Settings, role: str) -> Container:
    """The container for one process; ``role`` is "server", "worker" or "admin"."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role == "worker" and settings.socketio_manager != "redis":
        raise ValueError("`chat worker` fans out through Redis: set CHAT_SOCKETIO_MANAGER=redis")
    if role == "worker" and settings.broker != "rabbitmq":
        raise ValueError("`chat worker` consumes RabbitMQ: set CHAT_BROKER=rabbitmq")
    return Container(settings=settings, role=role)
