"""A stand-in for the newsroom's publishing worker, for the Docker Compose stack.

Consumes ``$WORKER_QUEUE`` (default ``articles``) on ``$AMQP_URL`` and acknowledges
each message, so that the queue has the consumer the monitor expects
(``min_consumers: 1`` in compose/pipeline.yml). Stop it
(``docker compose stop article-worker``) to see the queue degrade and
PipelineQueueNoConsumers fire. Reconnects when the broker goes away.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pika
import pika.exceptions


def on_message(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    method: pika.spec.Basic.Deliver,
    properties: pika.spec.BasicProperties,
    body: bytes,
) -> None:
    print(f"published article ({len(body)} bytes)", flush=True)
    channel.basic_ack(delivery_tag=method.delivery_tag)


def main() -> None:
    url = os.environ["AMQP_URL"]
    queue = os.environ.get("WORKER_QUEUE", "articles")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(url))
            channel = connection.channel()
            # The same arguments as init_stack.py's declaration.
            channel.queue_declare(queue=queue, durable=True)
            channel.basic_qos(prefetch_count=10)
            channel.basic_consume(queue=queue, on_message_callback=on_message)
            print(f"consuming {queue}", flush=True)
            channel.start_consuming()
        except pika.exceptions.AMQPError as exc:
            print(f"broker unavailable ({type(exc).__name__}); retrying in 5s", flush=True)
            time.sleep(5)


if __name__ == "__main__":
    main()
