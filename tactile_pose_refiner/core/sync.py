"""Time synchronisation of message streams, ROS-free (stamps in integer nanoseconds).

ApproximateSync has the semantics of message_filters.ApproximateTimeSynchronizer, which the
nodes use instead where it is importable: one message per stream whose stamps lie within
`slop`, every message used at most once, sets emitted in time order, at most `queue_size`
messages waiting per stream. StampedBuffer keeps the recent messages of one stream for a
lookup by nearest stamp (joint states and touch at an image's time).

Both clear themselves when time jumps back by more than `jump_back_s` (a bag loop rewinding, a
restarted driver, sim time reset; also the return to normal after one stamp from the far
future), the way tf2 clears its buffer: without that, every later message would be older than
the newest seen and be dropped for ever.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

JUMP_BACK_S = 0.1  # a stamp this much older than the newest seen (3 camera frames) is a jump back in time, not disorder


class ApproximateSync:
    """on_jump(seconds): called when time jumped back by that much and the queues were cleared."""

    def __init__(
        self,
        streams: int,
        queue_size: int,
        slop_s: float,
        callback: Callable[..., None],
        on_jump: Callable[[float], None] | None = None,
        jump_back_s: float = JUMP_BACK_S,
    ) -> None:
        if streams < 1 or queue_size < 1 or slop_s < 0:
            raise ValueError("ApproximateSync needs streams >= 1, queue_size >= 1, slop >= 0")
        self.queues = [deque(maxlen=queue_size) for _ in range(streams)]
        self.slop_ns = int(slop_s * 1e9)
        self.callback = callback
        self.on_jump = on_jump
        self.jump_back_ns = int(jump_back_s * 1e9)
        self.newest: list[int | None] = [None] * streams

    def add(self, stream: int, stamp_ns: int, item: Any) -> None:
        newest = self.newest[stream]
        if newest is not None and stamp_ns < newest - self.jump_back_ns:
            self.reset()
            if self.on_jump is not None:
                self.on_jump((newest - stamp_ns) / 1e9)
        elif newest is not None and stamp_ns < newest:
            return  # out of order: message_filters drops these as well
        self.newest[stream] = stamp_ns
        self.queues[stream].append((stamp_ns, item))
        self._match()

    def reset(self) -> None:
        """Forget every waiting message and stamp (after a jump back in time)."""
        for queue in self.queues:
            queue.clear()
        self.newest = [None] * len(self.queues)

    def _match(self) -> None:
        while all(self.queues):
            # The newest of the streams' oldest messages: no earlier set can still complete.
            pivot = max(queue[0][0] for queue in self.queues)
            chosen = [min(range(len(q)), key=lambda k, q=q: abs(q[k][0] - pivot)) for q in self.queues]
            stamps = [q[k][0] for q, k in zip(self.queues, chosen)]
            if max(stamps) - min(stamps) <= self.slop_ns:
                items = [q[k][1] for q, k in zip(self.queues, chosen)]
                for q, k in zip(self.queues, chosen):
                    for _ in range(k + 1):
                        q.popleft()
                self.callback(*items)
                continue
            # The oldest chosen message can only pair with messages that have passed: drop it.
            oldest = min(range(len(stamps)), key=stamps.__getitem__)
            queue = self.queues[oldest]
            for _ in range(chosen[oldest] + 1):
                queue.popleft()


class StampedBuffer:
    """The last `capacity` (stamp_ns, item) of one stream; lookup by nearest stamp. Safe to add
    from one thread (the executor) while another looks up (a worker)."""

    def __init__(self, capacity: int, jump_back_s: float = JUMP_BACK_S) -> None:
        self.items: deque[tuple[int, Any]] = deque(maxlen=capacity)
        self.jump_back_ns = int(jump_back_s * 1e9)
        self.lock = threading.Lock()
        self.newest: int | None = None  # newest stamp held (kept: a scan per message was costly at 30 Hz)

    def add(self, stamp_ns: int, item: Any) -> float | None:
        """Keep the item; when time jumped back (the stamp is older than the newest held by more
        than jump_back_s) the buffer is cleared first and the jump [s] returned, else None."""
        with self.lock:
            jump = None
            if self.newest is not None and stamp_ns < self.newest - self.jump_back_ns:
                self.items.clear()
                jump = (self.newest - stamp_ns) / 1e9
                self.newest = None
            self.items.append((stamp_ns, item))
            self.newest = stamp_ns if self.newest is None else max(self.newest, stamp_ns)
            return jump

    def nearest(self, stamp_ns: int, tolerance_s: float) -> tuple[Any, float] | None:
        """(item, |offset| in s) of the message nearest to stamp_ns, None beyond tolerance."""
        with self.lock:
            if not self.items:
                return None
            stamp, item = min(self.items, key=lambda entry: abs(entry[0] - stamp_ns))
        offset = abs(stamp - stamp_ns) / 1e9
        return (item, offset) if offset <= tolerance_s else None

    def settled(self, stamp_ns: int) -> bool:
        """Has a message at or after stamp_ns arrived? A stream arrives in stamp order, so no
        later message can be nearer to stamp_ns than what the buffer holds then."""
        with self.lock:
            return any(stamp >= stamp_ns for stamp, _ in self.items)

    def take_near(self, stamp_ns: int, tolerance_s: float) -> list[Any]:
        """Remove and return every item within tolerance of stamp_ns."""
        with self.lock:
            near = [item for stamp, item in self.items if abs(stamp - stamp_ns) <= tolerance_s * 1e9]
            kept = [(s, i) for s, i in self.items if abs(s - stamp_ns) > tolerance_s * 1e9]
            self.items.clear()
            self.items.extend(kept)
            self.newest = max((stamp for stamp, _ in kept), default=None)
        return near

    def __len__(self) -> int:
        return len(self.items)
