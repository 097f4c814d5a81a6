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
from chat_adapters.security.tokens import JwtTokenService
from chat_adapters.socketio.fan_out import InlineFanOutManager
from chat_adapters.socketio.json import OrjsonForSocketIO
from chat_adapters.socketio.notifier import SocketIONotifier
from chat_adapters.socketio.redis_manager import SupervisedRedisManager
from chat_adapters.sql.engine import create_engine
from chat_adapters.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory
from chat_adapters.system import SystemClock, UuidGenerator
from chat_bootstrap import lifecycles
from chat_bootstrap.settings import Settings
from chat_domain.ports.rate_limit import RateRule
from chat_domain.usecases.administration import ListAllRooms, PruneMessages
from chat_domain.usecases.auth import Authenticate, LogIn, RegisterUser, SearchUsers
from chat_domain.usecases.blocks import BlockUser, ListBlocks, UnblockUser
from chat_domain.usecases.consuming import MessageConsumer
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

socketio_logger = logging.getLogger("chat.socketio")


def _origins_or_same_origin(origins: list[str]) -> list[str] | None:
    # engine.io reads [] as "CORS handling off", which lets every web page open a socket;
    # None is "same origin only", the safe default when no origin is configured.
    return list(origins) or None


ROLES = ("server", "worker", "admin")


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    # "server" (REST + sockets), "worker" (consumer only) or "admin" (the database only:
    # `chat migrate` and the operators' commands, which open just ``database``):
    # decides how events are emitted and what is opened.
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
    worker_group = providers.Selector(
        settings.provided.socketio_manager,
        local=providers.Singleton(
            InMemoryWorkerGroup, lease_seconds=settings.provided.worker_lease_seconds
        ),
        redis=providers.Singleton(
            RedisWorkerGroup,
            url=settings.provided.redis_url,
            name=settings.provided.rabbitmq_prefix,
            lease_seconds=settings.provided.worker_lease_seconds,
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
        logger=False,
        engineio_logger=False,
    )
    # A worker has no sockets of its own: it publishes through a write-only manager.
    write_only_manager = providers.Singleton(
        SupervisedRedisManager,
        url=settings.provided.redis_url,
        channel=settings.provided.redis_channel,
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

    # --- lifecycles: opened by init_resources, closed by shutdown_resources ----------
    # Trailing arguments order them (chat_bootstrap.lifecycles): the broker starts after,
    # and closes before, the database and the fan-out, so the message in hand is still
    # stored and fanned out. Presence and the limiter serve sockets: servers only.
    database = providers.Resource(
        lifecycles.database, engine, migrate_first=settings.provided.auto_migrate
    )
    fan_out = providers.Resource(lifecycles.closing, fan_out_manager)
    no_client: providers.Object[None] = providers.Object(None)
    presence_lifecycle = providers.Resource(
        lifecycles.closing, providers.Selector(role, server=presence, worker=no_client)
    )
    rate_limiter_lifecycle = providers.Resource(
        lifecycles.closing, providers.Selector(role, server=rate_limiter, worker=no_client)
    )
    running_broker = providers.Resource(lifecycles.running_broker, broker, database, fan_out)

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
    # A singleton: it keeps a cache of the users it has resolved.
    authenticate = providers.Singleton(Authenticate, uow=uow, tokens=tokens)
    search_users = providers.Factory(SearchUsers, uow=uow)
    create_group_room = providers.Factory(
        CreateGroupRoom,
        uow=uow,
        notifier=notifier,
        clock=clock,
        ids=ids,
        max_members=settings.provided.max_members_per_room,
        max_rooms_per_user=settings.provided.max_rooms_per_user,
    )
    open_direct_room = providers.Factory(
        OpenDirectRoom,
        uow=uow,
        notifier=notifier,
        clock=clock,
        ids=ids,
        max_rooms_per_user=settings.provided.max_rooms_per_user,
    )
    get_room = providers.Factory(GetRoom, uow=uow)
    list_rooms = providers.Factory(ListRooms, uow=uow)
    add_member = providers.Factory(
        AddMember,
        uow=uow,
        notifier=notifier,
        clock=clock,
        max_members=settings.provided.max_members_per_room,
    )
    remove_member = providers.Factory(RemoveMember, uow=uow, notifier=notifier, clock=clock)
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
    store_messages = providers.Factory(StoreMessages, uow=uow, notifier=notifier)
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
    )
    delete_message = providers.Factory(DeleteMessage, uow=uow, notifier=notifier)
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
    prune_messages = providers.Factory(PruneMessages, uow=uow, clock=clock)
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
