"""The generation gate on fixed inputs: fair order by tenant, the admission decision, the deadline drop."""

from __future__ import annotations

import time

import pytest

from rag.errors import DeadlineExceeded, Overloaded
from rag.generation.gate import GenerationGate
from tests.conftest import GateQueue


def test_tenants_are_served_in_turn_whatever_their_backlog() -> None:
    queue = GateQueue(GenerationGate(slots=1))
    queue.add("a", "a", "a", "a", "b", "c", "b")
    # One question of each tenant a round; within a round the tenant with fewer questions in the gate first.
    assert queue.gate.order() == ["c", "b", "a", "b", "a", "a", "a"]
    queue.release()
    assert queue.served == ["holder", "c", "b", "a", "b", "a", "a", "a"] and not queue.errors


def test_a_heavier_tenant_gets_more_turns() -> None:
    queue = GateQueue(GenerationGate(slots=1, weights={"gold": 2.0}))
    queue.add("std", "std", "std", "gold", "gold", "gold", "gold")
    # Tags: gold's calls cost 0.5 each (0.5, 1, 1.5, 2), std's 1 (1, 2, 3); ties go in arrival order.
    assert queue.gate.order() == ["gold", "std", "gold", "gold", "std", "gold", "std"]
    queue.release()


def test_admission_refuses_the_flooding_tenant_and_admits_the_other() -> None:
    gate = GenerationGate(slots=1, max_wait_seconds=5.0, initial_service_seconds=2.0)
    queue = GateQueue(gate)
    assert gate.expected_wait("a") == pytest.approx(2.0)  # one call running: one service time
    queue.add("a", "a")
    # a's next question would wait behind the running one, its own two, and the two turns the busy holder
    # tenant may still take before it (tags 2 and 3): 5 × 2 s > 5 s.
    assert gate.expected_wait("a") == pytest.approx(10.0)
    with pytest.raises(Overloaded, match=r"wait about 10 s .*limit 5 s") as refused:
        gate.admit("a")
    assert refused.value.status_code == 503 and refused.value.retry_after() == 5
    # b goes ahead of a's backlog: it ties with a's first and is the lighter tenant, so only the running
    # question is before it.
    assert gate.expected_wait("b") == pytest.approx(2.0)
    gate.admit("b")
    queue.release()


def test_an_idle_gate_admits_at_once() -> None:
    gate = GenerationGate(slots=2, max_wait_seconds=0.5)
    assert gate.expected_wait("a") == 0
    gate.admit("a")
    with gate.slot("a"):
        assert gate.expected_wait("b") == 0  # the second slot is free
        assert gate.stats().running == 1


def test_a_call_whose_deadline_passes_in_the_queue_is_dropped_before_it_runs() -> None:
    queue = GateQueue(GenerationGate(slots=1))
    queue.add("late", deadline=time.monotonic() + 0.2)
    queue.add("patient")
    time.sleep(0.5)
    assert queue.gate.order() == ["patient"]  # the late call left the queue on its own
    queue.release()
    assert queue.served == ["holder", "patient"]
    assert len(queue.errors) == 1 and isinstance(queue.errors[0], DeadlineExceeded)
    with pytest.raises(DeadlineExceeded), queue.gate.slot("x", deadline=time.monotonic() - 1):
        pass  # already past: refused without queueing


def test_the_service_time_follows_the_calls() -> None:
    gate = GenerationGate(initial_service_seconds=2.0)
    for _ in range(20):
        with gate.slot("a"):
            time.sleep(0.01)
    assert gate.stats().service_seconds < 0.1 and gate.stats().mean_wait_seconds < 0.05


def test_the_expected_wait_allows_for_the_spread_of_service_times() -> None:
    now = [0.0]
    gate = GenerationGate(initial_service_seconds=2.0, clock=lambda: now[0])
    for held in (1.0, 3.0) * 10:  # questions that hold the slot 1 s and 3 s in turn
        with gate.slot("a"):
            now[0] += held
    mean = gate.stats().service_seconds
    assert 1.5 < mean < 2.5
    with gate.slot("a"):  # one question running: the next waits one service time, and its spread
        wait = gate.expected_wait("b")
    assert mean + 0.5 < wait < mean + 1.5
