"""StreamHub: one task re-checks every open StreamIsActive, in slices, and wakes a stream only to send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from scaler.changes import Changes
from scaler.errors import InvalidTrigger, StaleData
from scaler.externalscaler import externalscaler_pb2 as pb
from scaler.streams import StreamHub


def ref(name: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace="ns")


@dataclass
class Version:
    """A basis for the tests: it holds while its trigger's version is the one it was given, until `until`."""

    fleet: Fleet
    name: str
    version: int
    until: float

    def holds(self, now: float) -> bool:
        return now < self.until and self.fleet.versions[self.name] == self.version


class Fleet:
    """Whether each trigger is active, how often each was checked, and (for some) a version that says
    when its answer may have changed."""

    def __init__(self) -> None:
        self.active: dict[str, bool] = {}
        self.checks: dict[str, int] = {}
        self.raises: dict[str, Exception] = {}
        self.versions: dict[str, int] = {}
        self.until: dict[str, float] = {}

    def __call__(self, request: pb.ScaledObjectRef) -> tuple[bool, Version | None]:
        name = request.name
        self.checks[name] = self.checks.get(name, 0) + 1
        if name in self.raises:
            raise self.raises[name]
        basis = None
        if name in self.versions:
            basis = Version(self, name, self.versions[name], self.until.get(name, float("inf")))
        return self.active.get(name, False), basis

    def change(self, name: str, active: bool) -> None:
        self.active[name] = active
        self.versions[name] += 1


def hub(fleet: Fleet, changes: Changes, stopping: asyncio.Event, resend: float = 60.0, **kwargs: float) -> StreamHub:
    options: dict[str, float] = {"min_interval": 0.0, "idle_recheck": 60.0, **kwargs}
    return StreamHub(fleet, changes, stopping, resend, **options)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def test_a_stream_opened_while_active_has_an_activation_at_once() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    fleet.active["a"] = True
    streams = hub(fleet, changes, stopping)
    watch = streams.watch(ref("a"))
    assert watch.take() == "activation" and watch.wake.is_set()
    assert watch.take() is None
    quiet = streams.watch(ref("b"))
    assert quiet.take() is None and not quiet.wake.is_set()
    stopping.set()
    changes.notify()


async def test_a_change_wakes_only_the_streams_that_became_active() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    streams = hub(fleet, changes, stopping)
    watches = {name: streams.watch(ref(name)) for name in ("a", "b", "c")}
    await asyncio.sleep(0.01)  # the hub's first round, then it waits for a change
    fleet.active["b"] = True
    changes.notify()
    await until(lambda: watches["b"].wake.is_set())
    assert watches["b"].take() == "activation"
    assert not watches["a"].wake.is_set() and not watches["c"].wake.is_set()
    rounds = streams.rounds
    changes.notify()  # still active: no second activation, and nothing resent before it is due
    await until(lambda: streams.rounds > rounds)
    assert watches["b"].take() is None
    stopping.set()
    changes.notify()


async def test_true_is_resent_while_active_and_again_after_a_new_activation() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    fleet.active["a"] = True
    streams = hub(fleet, changes, stopping, resend=0.05, idle_recheck=0.01)
    watch = streams.watch(ref("a"))
    assert watch.take() == "activation"
    await until(lambda: watch.message == "resend")  # no change needed: the resend is due by time
    fleet.active["a"] = False
    watch.take()
    await until(lambda: not watch.was_active)
    await asyncio.sleep(0.1)
    assert watch.take() is None  # nothing while inactive, not even a false
    fleet.active["a"] = True
    await until(lambda: watch.message is not None)
    assert watch.take() == "activation"
    stopping.set()
    changes.notify()


async def test_stale_data_is_inactive_and_other_errors_end_the_stream() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    fleet.raises["stale"] = StaleData("no data")
    fleet.raises["bad"] = InvalidTrigger("bad metadata")
    streams = hub(fleet, changes, stopping)
    stale, bad = streams.watch(ref("stale")), streams.watch(ref("bad"))
    assert stale.error is None and stale.take() is None and not stale.wake.is_set()
    assert isinstance(bad.error, InvalidTrigger) and bad.wake.is_set()
    await streams.wait(bad)  # an error to report: no waiting
    stopping.set()
    changes.notify()


async def test_a_round_yields_to_the_loop_between_slices() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    streams = hub(fleet, changes, stopping, slice_seconds=10.0, wakes_per_slice=10)
    for i in range(100):
        streams.watch(ref(f"s{i}"))
    for name in list(fleet.checks):
        fleet.active[name] = True  # every stream becomes active: 100 wakes, 10 per slice
    fleet.checks.clear()
    seen: list[int] = []

    async def observer() -> None:  # runs whenever the hub yields
        while len(seen) < 20 and sum(fleet.checks.values()) < 100:
            seen.append(sum(fleet.checks.values()))
            await asyncio.sleep(0)

    task = asyncio.create_task(observer())
    changes.notify()
    await until(lambda: sum(fleet.checks.values()) >= 100)
    await task
    between = [n for n in seen if 0 < n < 100]
    assert between and all(n % 10 == 0 for n in between), seen  # it stopped after each 10 wakes
    stopping.set()
    changes.notify()


async def test_slices_are_bounded_in_time_too() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    streams = hub(fleet, changes, stopping, slice_seconds=0.0, wakes_per_slice=1000)
    for i in range(5):
        streams.watch(ref(f"s{i}"))
    fleet.checks.clear()
    seen: list[int] = []

    async def observer() -> None:
        while sum(fleet.checks.values()) < 5:
            seen.append(sum(fleet.checks.values()))
            await asyncio.sleep(0)

    task = asyncio.create_task(observer())
    changes.notify()
    await task
    assert {1, 2, 3, 4} <= set(seen), seen  # a zero budget yields after every stream


async def test_min_interval_bounds_how_often_a_stream_is_checked() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    streams = hub(fleet, changes, stopping, min_interval=0.2)
    streams.watch(ref("a"))
    await asyncio.sleep(0.01)
    for _ in range(20):  # a push every 10 ms
        changes.notify()
        await asyncio.sleep(0.01)
    assert 2 <= fleet.checks["a"] <= 3, fleet.checks  # the open, then a round at most every 0.2 s
    stopping.set()
    changes.notify()


async def test_idle_recheck_without_any_change() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    streams = hub(fleet, changes, stopping, idle_recheck=0.02)
    watch = streams.watch(ref("a"))
    fleet.active["a"] = True  # activity that comes from time passing (a window emptying), no push
    await until(lambda: watch.message == "activation")
    stopping.set()
    changes.notify()


async def test_stopping_wakes_every_stream_and_the_hub_ends() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    streams = hub(fleet, changes, stopping)
    watches = [streams.watch(ref(f"s{i}")) for i in range(3)]
    waiters = [asyncio.create_task(streams.wait(w)) for w in watches]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in waiters)
    stopping.set()
    changes.notify()
    await asyncio.wait_for(asyncio.gather(*waiters), 1.0)
    await asyncio.sleep(0.01)
    assert streams._task is not None and streams._task.done()


async def test_a_closed_stream_is_no_longer_checked_and_the_hub_ends_with_the_last() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    streams = hub(fleet, changes, stopping)
    watch = streams.watch(ref("a"))
    await asyncio.sleep(0.01)
    streams.unwatch(watch)
    assert len(streams) == 0
    checks = fleet.checks["a"]
    changes.notify()
    await asyncio.sleep(0.02)
    assert fleet.checks["a"] == checks
    assert streams._task is not None and streams._task.done()
    again = streams.watch(ref("b"))  # a new stream starts a new hub
    assert streams._task is not None and not streams._task.done()
    streams.unwatch(again)
    changes.notify()


async def test_a_change_re_checks_only_the_streams_whose_basis_moved() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    fleet.versions.update(a=0, b=0)
    streams = hub(fleet, changes, stopping)
    watches = {name: streams.watch(ref(name)) for name in ("a", "b", "c")}  # c has no basis
    await asyncio.sleep(0.01)
    fleet.checks.clear()
    fleet.change("b", True)
    changes.notify()
    await until(lambda: watches["b"].message == "activation")
    assert fleet.checks == {"b": 1, "c": 1}, fleet.checks  # a's answer still holds: not evaluated
    rounds = streams.rounds
    changes.notify()
    await until(lambda: streams.rounds > rounds)
    assert fleet.checks == {"b": 1, "c": 2}, fleet.checks
    stopping.set()
    changes.notify()


@pytest.mark.parametrize("offset", [None, 1000.0], ids=["the loop's clock", "the check's own clock"])
async def test_a_basis_that_ends_in_time_is_re_checked_without_a_change(offset: float | None) -> None:
    """`until` is in the terms of the clock the check evaluates at (the scaler's, or a test's)."""
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    loop = asyncio.get_running_loop()
    clock = None if offset is None else (lambda: loop.time() + offset)
    fleet.versions["a"] = 0
    fleet.until["a"] = loop.time() + (offset or 0.0) + 0.05  # a series in its view goes stale then
    streams = hub(fleet, changes, stopping, clock=clock)  # type: ignore[arg-type]  # idle_recheck 60 s
    watch = streams.watch(ref("a"))
    fleet.active["a"] = True  # what the view answers once that series has gone
    fleet.until["a"] = float("inf")
    await until(lambda: watch.message == "activation", timeout=1.0)
    stopping.set()
    changes.notify()


async def test_every_stream_is_checked_in_full_within_full_recheck() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    fleet.versions["a"] = 0
    streams = hub(fleet, changes, stopping, idle_recheck=0.01, full_recheck=0.1)
    watch = streams.watch(ref("a"))
    fleet.active["a"] = True  # a basis that is wrong (a missed change) is right again within full_recheck
    await until(lambda: watch.message == "activation", timeout=1.0)
    assert fleet.checks["a"] == 2
    stopping.set()
    changes.notify()


async def test_a_full_check_wakes_the_hub_by_itself() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    fleet.versions["a"] = 0
    streams = hub(fleet, changes, stopping, full_recheck=0.1)  # idle_recheck 60 s: only full_at can wake it
    loop = asyncio.get_running_loop()
    opened = loop.time()
    watch = streams.watch(ref("a"))
    assert 0.05 <= watch.full_at - opened <= 0.1 + 0.01  # spread over half to all of full_recheck
    fleet.active["a"] = True
    await until(lambda: watch.message == "activation", timeout=1.0)
    stopping.set()
    changes.notify()


async def test_a_resend_is_due_whatever_the_basis_says() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    fleet.versions["a"], fleet.active["a"] = 0, True
    streams = hub(fleet, changes, stopping, resend=0.05, idle_recheck=0.01)
    watch = streams.watch(ref("a"))
    assert watch.take() == "activation"
    await until(lambda: watch.message == "resend", timeout=1.0)
    assert fleet.checks["a"] == 2  # checked once more for the resend, not every round
    stopping.set()
    changes.notify()


async def test_a_failed_check_has_no_basis() -> None:
    fleet, changes, stopping = Fleet(), Changes(), asyncio.Event()
    fleet.versions["stale"] = 0
    fleet.raises["stale"] = StaleData("no data")
    streams = hub(fleet, changes, stopping)
    watch = streams.watch(ref("stale"))
    assert watch.basis is None
    await asyncio.sleep(0.01)
    checks = fleet.checks["stale"]
    changes.notify()
    await until(lambda: fleet.checks["stale"] > checks)  # re-checked on every change, as without a basis
    stopping.set()
    changes.notify()


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="resend"):
        StreamHub(Fleet(), Changes(), asyncio.Event(), 0.0, 0.1, 1.0)
    with pytest.raises(ValueError, match="min_interval"):
        StreamHub(Fleet(), Changes(), asyncio.Event(), 5.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="full_recheck"):
        StreamHub(Fleet(), Changes(), asyncio.Event(), 5.0, 0.1, 1.0, full_recheck=0.0)
