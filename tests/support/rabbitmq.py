"""Clean-up of what a test run declared on the shared RabbitMQ, so runs never see each other."""

from __future__ import annotations

import aio_pika

from chat_adapters.rabbitmq.broker import RabbitMQBroker
from chat_bootstrap.settings import Settings

DEFAULT_PARTITIONS: int = Settings.model_fields["rabbitmq_partitions"].default


async def delete_topology(url: str, prefix: str, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Delete the queues and exchanges a broker with ``prefix`` declares (names from the
    adapter itself, so they cannot drift)."""
    names = RabbitMQBroker(url, prefix=prefix, partitions=partitions)
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for queue in [*names.queue_names(), names.dead_letter_name]:
            await channel.queue_delete(queue)
        for exchange in (names.exchange_name, names.dead_letter_name):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
