"""Admission to generation in one worker: a few slots, handed out in weighted fair order by tenant, with a
refusal up front when the wait would be too long and a drop when a caller's deadline passes in the queue.

Generation is the one slow, CPU-bound step (seconds per answer on two cores); everything before it (cache,
retrieval) takes milliseconds. Without a gate every request queues on the model's lock in arrival order:
one tenant's flood makes everyone wait behind it, and a question whose client gave up is still answered.

- Fair order: each waiting question carries a virtual finish tag, max(the gate's virtual time, its tenant's
  last tag) + 1 / weight (start-time fair queueing). The smallest tag goes next, so tenants are served in
  turn and a tenant with twice the weight gets twice the turns, whatever the size of its backlog. On equal
  tags the tenant with fewer questions in the gate goes first (then arrival order): a light tenant's
  second question does not wait behind a flood's turn.
- Admission: a question holds its slot for all its model calls (the cheap answer and any escalation), so
  its latency is one wait plus its own generation. A new question's expected wait is what the n questions
  that would go before it take: those waiting ahead in serving order, those running beyond the free slots,
  and the turns other busy tenants will still take before its tag comes up if they keep asking (their
  later questions get tags up to its own). They take n × the recent time a question holds a slot plus
  √n × its spread (exponentially weighted mean and standard deviation), so that a run of long answers
  ahead does not make the admitted wait much longer than the limit. Past ``max_wait_seconds`` it is
  refused at once with the excess as Retry-After: a flooding tenant's new questions sit behind its own
  backlog and are refused, while another tenant's go to the front of the queue and are admitted.
- Deadlines: a question whose caller's deadline passes while it waits leaves the queue before any model call.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from rag.errors import DeadlineExceeded, Overloaded

SERVICE_SMOOTHING = 0.2  # weight of the newest question in the mean (and spread) of the service time


@dataclass
class _Waiter:
    tenant: str
    tag: float
    deadline: float | None
    arrival: int
    granted: bool = False
    wake: threading.Condition = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass(frozen=True)
class GateStats:
    queued: int
    running: int
    slots: int
    service_seconds: float  # the recent mean time a question holds a slot
    mean_wait_seconds: float  # the recent mean time a question waited for its slot


class GenerationGate:
    """``slot(tenant, deadline)`` wraps a question's model calls; ``admit(tenant)`` decides before any work."""

    def __init__(
        self,
        slots: int = 1,
        max_wait_seconds: float = 30.0,
        weights: Mapping[str, float] | None = None,
        initial_service_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1 or max_wait_seconds <= 0 or initial_service_seconds <= 0:
            raise ValueError("slots, max_wait_seconds and initial_service_seconds must be positive")
        if any(w <= 0 for w in (weights or {}).values()):
            raise ValueError("tenant weights must be positive")
        self.slots = slots
        self.max_wait_seconds = max_wait_seconds
        self._weights = dict(weights or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: list[_Waiter] = []
        self._running = 0
        self._virtual = 0.0  # the start tag (finish tag − cost) of the question granted last
        self._last_tag: dict[str, float] = {}
        self._service = initial_service_seconds
        self._service_variance = 0.0
        self._mean_wait = 0.0
        self._arrivals = 0
        self._in_gate: dict[str, int] = {}  # tenant → its questions waiting or running

    # -- decisions ----------------------------------------------------------------------------------

    def expected_wait(self, tenant: str) -> float:
        """Seconds a new question of ``tenant`` would wait for a slot now."""
        with self._lock:
            return self._expected_wait(tenant, (self._tag(tenant), self._in_gate.get(tenant, 0) + 1, self._arrivals))

    def admit(self, tenant: str) -> None:
        """Refuse a new question (``Overloaded``, 503) when its expected wait passes the limit."""
        wait = self.expected_wait(tenant)
        if wait > self.max_wait_seconds:
            raise Overloaded(
                f"the service is busy: a new question would wait about {wait:.0f} s for generation "
                f"(limit {self.max_wait_seconds:g} s); try again later",
                retry_after_seconds=max(1, math.ceil(wait - self.max_wait_seconds)),
            )

    # -- the slot -----------------------------------------------------------------------------------

    @contextmanager
    def slot(self, tenant: str, deadline: float | None = None) -> Iterator[None]:
        """Hold one generation slot for the block; wait for it in fair order. ``deadline`` is on the gate's
        clock (``time.monotonic`` by default): past it, ``DeadlineExceeded`` before the block runs."""
        self._acquire(tenant, deadline)
        started = self._clock()
        try:
            yield
        finally:
            self._release(tenant, self._clock() - started)

    def _acquire(self, tenant: str, deadline: float | None) -> None:
        arrived = self._clock()
        with self._lock:
            if deadline is not None and arrived >= deadline:
                raise DeadlineExceeded("the request's deadline passed before generation could start")
            waiter = _Waiter(tenant, self._tag(tenant), deadline, self._arrivals, wake=threading.Condition(self._lock))
            self._arrivals += 1
            self._last_tag[tenant] = waiter.tag
            self._in_gate[tenant] = self._in_gate.get(tenant, 0) + 1
            self._waiting.append(waiter)
            self._dispatch()
            while not waiter.granted:
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    self._waiting.remove(waiter)
                    self._leave(tenant)
                    self._dispatch()
                    raise DeadlineExceeded("the request's deadline passed while it waited for generation")
                waiter.wake.wait(timeout=remaining)
            waited = self._clock() - arrived
            self._mean_wait += SERVICE_SMOOTHING * (waited - self._mean_wait)

    def _release(self, tenant: str, held: float) -> None:
        with self._lock:
            self._running -= 1
            self._leave(tenant)
            deviation = held - self._service
            self._service += SERVICE_SMOOTHING * deviation
            self._service_variance = (1 - SERVICE_SMOOTHING) * (self._service_variance + SERVICE_SMOOTHING * deviation**2)
            self._dispatch()

    def _leave(self, tenant: str) -> None:
        self._in_gate[tenant] -= 1
        if not self._in_gate[tenant]:
            del self._in_gate[tenant]

    def _key(self, waiter: _Waiter) -> tuple[float, int, int]:
        """Serving order: the tag, then the lighter tenant, then arrival."""
        return waiter.tag, self._in_gate.get(waiter.tenant, 0), waiter.arrival

    def _dispatch(self) -> None:
        """Grant free slots to the waiters first in serving order (the caller holds the lock)."""
        while self._running < self.slots and self._waiting:
            chosen = min(self._waiting, key=self._key)
            self._waiting.remove(chosen)
            self._virtual = max(self._virtual, chosen.tag - self._cost(chosen.tenant))
            chosen.granted = True
            self._running += 1
            chosen.wake.notify_all()

    def _tag(self, tenant: str) -> float:
        return max(self._virtual, self._last_tag.get(tenant, 0.0)) + self._cost(tenant)

    def _cost(self, tenant: str) -> float:
        return 1.0 / self._weights.get(tenant, 1.0)

    def _expected_wait(self, tenant: str, key: tuple[float, int, int]) -> float:
        ahead = sum(1 for w in self._waiting if self._key(w) < key)
        tag = key[0]
        for other in self._in_gate:  # busy tenants' turns still to come before this tag
            if other != tenant:
                since = max(self._virtual, self._last_tag.get(other, 0.0))
                ahead += max(0, math.floor((tag - since) / self._cost(other) + 1e-9))
        queue_position = ahead + self._running - self.slots + 1  # questions to finish before a slot is ours
        n = max(0, queue_position) / self.slots  # service times before a slot is ours
        return n * self._service + math.sqrt(n * self._service_variance)

    def stats(self) -> GateStats:
        with self._lock:
            return GateStats(len(self._waiting), self._running, self.slots, self._service, self._mean_wait)

    def order(self) -> list[str]:
        """The waiting questions' tenants in the order they will be served (for tests and debugging)."""
        with self._lock:
            return [w.tenant for w in sorted(self._waiting, key=self._key)]
