"""A producer of batches run in its own thread, a bounded queue ahead of the consumer: the source's reads overlap the
target's writes (replay, reload), and memory stays bounded to a few batches."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")
QUEUE_DEPTH: Final = 3  # batches read ahead of the consumer (memory: a few batches)


_END: Final = object()


class Pump(Generic[T]):
    """Runs a producer of batches in a thread, a bounded queue ahead of the writer; errors cross over to the writer."""

    def __init__(self, batches: Iterator[T]) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(batches,), name="migrate-reader", daemon=True)
        self.thread.start()

    def _run(self, batches: Iterator[T]) -> None:
        try:
            for batch in batches:
                if not self._put(batch):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the writer thread, which raises it
            self._put(exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # a generator's own cleanup (its connections, an inner Pump) runs now, in this thread

    def _put(self, item: Any) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
