"""Per-account in-flight limits: exactly the tier's number of slots, refused at once, never leaked."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from embedding2.accounts import Accounts, LimitError, Principal


def _principal(accounts: Accounts, name: str, tier: str) -> Principal:
    return accounts.authenticate(accounts.create_key(name, tier).token)


@pytest.mark.parametrize("tier", ["V0", "V1"])
async def test_exactly_tier_limit_concurrent_async(accounts: Accounts, tier: str) -> None:
    p = _principal(accounts, f"async-{tier}", tier)
    limit = p.concurrency
    assert limit == accounts.settings.tier_limits[tier]
    attempts = limit + 37
    gate = asyncio.Event()
    entered = 0

    async def request() -> str:
        nonlocal entered
        try:
            async with accounts.slot(p):
                entered += 1
                await gate.wait()
                return "served"
        except LimitError as exc:
            assert (exc.code, exc.http_status) == ("1302", 429)
            return "refused"

    tasks = [asyncio.create_task(request()) for _ in range(attempts)]
    while entered + sum(t.done() for t in tasks) < attempts:
        await asyncio.sleep(0.001)
    assert accounts.in_flight(p.account_id) == limit
    other = _principal(accounts, f"other-{tier}", tier)  # another account is not affected
    with accounts.slot(other):
        assert accounts.in_flight(other.account_id) == 1
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results.count("served") == limit and results.count("refused") == attempts - limit
    assert accounts.in_flight(p.account_id) == 0
    with accounts.slot(p):  # and the slots are usable again
        pass


def test_exactly_tier_limit_concurrent_threads(accounts: Accounts) -> None:
    p = _principal(accounts, "threads", "V0")
    n_threads = 80
    start = threading.Barrier(n_threads)
    hold = threading.Event()
    outcome: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        try:
            with accounts.slot(p):
                with lock:
                    outcome.append("served")
                hold.wait(10)
        except LimitError:
            with lock:
                outcome.append("refused")

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if len(outcome) == n_threads:
                break
        hold.wait(0.005)
    assert accounts.in_flight(p.account_id) == p.concurrency == 50
    hold.set()
    for t in threads:
        t.join()
    assert outcome.count("served") == 50 and outcome.count("refused") == 30
    assert accounts.in_flight(p.account_id) == 0


async def test_released_on_error_and_cancellation(accounts: Accounts) -> None:
    p = _principal(accounts, "errors", "V0")
    for _ in range(3 * p.concurrency):  # far more than the limit: any leak would show as 1302
        with pytest.raises(RuntimeError):
            async with accounts.slot(p):
                raise RuntimeError("handler failed")
    assert accounts.in_flight(p.account_id) == 0

    started = asyncio.Event()

    async def slow_request() -> None:
        async with accounts.slot(p):
            started.set()
            await asyncio.sleep(3600)  # a client that goes away mid-request

    tasks = [asyncio.create_task(slow_request()) for _ in range(p.concurrency)]
    await started.wait()
    await asyncio.sleep(0.01)
    assert accounts.in_flight(p.account_id) == p.concurrency
    with pytest.raises(LimitError):
        accounts.slot(p)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert accounts.in_flight(p.account_id) == 0

    async def timed_out() -> None:
        async with accounts.slot(p):
            await asyncio.sleep(3600)

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(timed_out(), 0.01)
    assert accounts.in_flight(p.account_id) == 0


def test_release_exactly_once(accounts: Accounts) -> None:
    p = _principal(accounts, "once", "V0")
    slots = [accounts.slot(p) for _ in range(10)]
    assert accounts.in_flight(p.account_id) == 10
    slots[0].release()
    slots[0].release()
    with slots[0]:
        pass
    assert slots[0].released
    assert accounts.in_flight(p.account_id) == 9
    for s in slots[1:5]:
        with s:
            pass
    assert accounts.in_flight(p.account_id) == 5
    del slots[:5]
    slots.clear()  # slots never entered nor released are given back when collected
    gc.collect()
    assert accounts.in_flight(p.account_id) == 0
