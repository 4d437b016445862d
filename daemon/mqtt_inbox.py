"""A bounded hand-over of received messages from paho's network thread to their consumer.

The consumer (the collector's ingest) takes messages in batches; paho's thread puts them.
Once `bound` messages wait, paho stops reading the socket (`room`, the link's read gate:
daemon/mqtt_socket.py) until the consumer has taken some, so a backlog waits at the broker
and in the kernel's socket buffer rather than in this process's memory - whatever the
broker's own window does (Mosquitto 2.0.11 exceeded it fourfold in a drain: mqtt_socket.py).

A consumer that stops for long (a full spool, a failing disk) must not cost the connection:
paho sends PINGREQ when the link has been quiet for a keepalive and drops the connection
when no PINGRESP has been read one keepalive later, and the PINGRESP is behind whatever the
broker sent before it. So once a pause has lasted `max_pause_s` (half a keepalive), paho
reads on until `hard_bound` messages wait (the collector's: the receive maximum it asks of
the broker). Past `hard_bound` nothing is read; the link may drop and reconnect, which loses
nothing (nothing waiting here was acknowledged; the broker sends it again).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, *, bound: int, hard_bound: int, max_pause_s: float) -> None:
        self._queue: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._bound = bound
        self._hard_bound = max(hard_bound, bound)
        self._max_pause_s = max_pause_s
        self._room = threading.Event()
        self._room.set()
        self._paused_since: float | None = None  # monotonic; paho's thread only
        self.pauses = 0  # times reading stopped for want of room
        self.most = 0  # the most messages seen waiting before a read

    def put(self, item: T) -> None:
        """paho's network thread: one received message."""
        self._queue.put(item)

    def waiting(self) -> int:
        return self._queue.qsize()

    def take(self, most: int, timeout: float) -> list[T]:
        """The consumer: up to `most` messages, waiting up to `timeout` for the first."""
        get, take_now = self._queue.get, self._queue.get_nowait
        try:
            batch = [get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < most:
            try:
                batch.append(take_now())
            except queue.Empty:
                break
        if self._queue.qsize() < self._bound:
            self._room.set()
        return batch

    def room(self, timeout: float) -> bool:
        """paho's network thread, before each read: True to read now; else False once
        `timeout` passed without the consumer making room."""
        waiting = self._queue.qsize()
        if waiting > self.most:
            self.most = waiting
        if waiting < self._bound:
            self._paused_since = None
            return True
        now = time.monotonic()
        if self._paused_since is None:
            self._paused_since = now
            self.pauses += 1
        elif now - self._paused_since >= self._max_pause_s and waiting < self._hard_bound:
            return True  # a long stall: read on, so that paho sees its PINGRESP
        self._room.clear()
        if self._queue.qsize() < self._bound:  # taken between the two looks
            return True
        return self._room.wait(timeout)
