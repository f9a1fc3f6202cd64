"""The bare-broker baseline for bench/transfers.py: pika publish -> consume on the same RabbitMQ, no engine.

Two publishers, both with publisher confirms, persistent delivery and mandatory routing into a durable quorum
queue, and one consumer with manual acks in another process:

- ``sync``: ``BlockingConnection`` + ``confirm_delivery()``: every publish waits for its own confirm (what a
  straightforward relay does, one message per round trip and per quorum commit);
- ``pipelined``: ``SelectConnection`` keeps up to ``window`` unconfirmed messages in flight and counts the
  broker's (possibly multiple) acks (what a batching relay can reach).

Latency is taken from just before ``basic_publish`` to the consumer's delivery callback (one machine, one clock).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

PERSISTENT = 2


@dataclass
class RawFigures:
    mode: str
    messages: int
    seconds: float
    publish_seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def publish_rate(self) -> float:
        return self.messages / self.publish_seconds if self.publish_seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def declare_quorum(channel: BlockingChannel, queue: str) -> None:
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})


def _consume(url: str, queue: str, count: int, prefetch: int, ready: Any, out: Any) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    latencies: list[float] = []
    last = [0.0]

    def on_message(ch: BlockingChannel, method: Basic.Deliver, _props: BasicProperties, body: bytes) -> None:
        now = time.time()
        latencies.append((now - json.loads(body)["t"]) * 1000)
        ch.basic_ack(method.delivery_tag)
        last[0] = now
        if len(latencies) >= count:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message, auto_ack=False)
    ready.set()
    channel.start_consuming()
    out.send((latencies, last[0]))
    connection.close()


def _body(seq: int) -> bytes:
    # About the size of a transfer envelope's payload.
    return json.dumps({"seq": seq, "t": time.time(), "pad": "线索摘要" * 40}, ensure_ascii=False).encode()


def _publish_sync(url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    props = BasicProperties(delivery_mode=PERSISTENT, content_type="application/json")
    for seq in range(count):
        channel.basic_publish("", queue, _body(seq), props, mandatory=True)
    connection.close()


def _publish_pipelined(url: str, queue: str, count: int, window: int) -> None:
    props = BasicProperties(delivery_mode=PERSISTENT, content_type="application/json")
    state = {"published": 0, "confirmed": 0, "nacked": 0}
    holder: dict[str, Any] = {}

    def fill() -> None:
        channel = holder["channel"]
        while state["published"] < count and state["published"] - state["confirmed"] < window:
            channel.basic_publish("", queue, _body(state["published"]), props, mandatory=True)
            state["published"] += 1

    def on_confirm(frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        newly = tag - state["confirmed"] if method.multiple else 1
        if isinstance(method, Basic.Nack):
            state["nacked"] += newly
        state["confirmed"] = tag if method.multiple else state["confirmed"] + 1
        if state["confirmed"] >= count:
            holder["connection"].close()
        else:
            fill()

    def on_channel(channel: Any) -> None:
        holder["channel"] = channel
        channel.confirm_delivery(on_confirm, callback=lambda _frame: fill())

    def on_open(connection: Any) -> None:
        connection.channel(on_open_callback=on_channel)

    connection = pika.SelectConnection(
        pika.URLParameters(url),
        on_open_callback=on_open,
        on_close_callback=lambda conn, _reason: conn.ioloop.stop(),
    )
    holder["connection"] = connection
    connection.ioloop.start()
    if state["nacked"]:
        raise RuntimeError(f"the broker refused {state['nacked']} messages")


def run(url: str, mode: str, count: int, *, queue: str, prefetch: int = 200, window: int = 256) -> RawFigures:
    """Publish ``count`` messages and consume them in another process; the queue is deleted afterwards."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    declare_quorum(channel, queue)
    channel.queue_purge(queue)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    receiver, sender = ctx.Pipe(duplex=False)
    consumer = ctx.Process(target=_consume, args=(url, queue, count, prefetch, ready, sender), daemon=True)
    consumer.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the raw consumer did not start")
        t0 = time.time()
        if mode == "sync":
            _publish_sync(url, queue, count)
        else:
            _publish_pipelined(url, queue, count, window)
        published = time.time()
        if not receiver.poll(120):
            raise RuntimeError("the raw consumer did not receive every message within 120 s")
        latencies, last = receiver.recv()
        consumer.join(10)
    finally:
        if consumer.is_alive():
            consumer.kill()
        channel.queue_delete(queue)
        connection.close()
    return RawFigures(mode, count, last - t0, published - t0, latencies)
