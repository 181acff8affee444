"""The shared DNS cache: TTLs with an injected clock, negative answers, the bound, single-flight."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable

import pytest

from spfpolicy.resolver.answers import DnsAnswer, DnsError, DnsFailure, DnsOutcome, DnsRecord
from spfpolicy.resolver.cache import FAILURE_TTL, CacheLimits, CachingResolver
from tests.support.clock import HandClock

FAR = float("inf")


class Upstream:
    """Counts questions; answers A records with a TTL, NXDOMAIN for nx.*, fails for bad.*."""

    def __init__(self, ttl: float = 300.0, negative_ttl: float = 900.0, delay: float = 0.0) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.delay = delay
        self.asked: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        with self.lock:
            self.asked.append((name, rdtype))
        if self.delay:
            time.sleep(self.delay)
        if name.startswith("bad."):
            raise DnsError(DnsFailure.SERVFAIL, f"127.0.0.1 answered SERVFAIL for {name}")
        if name.startswith("spent."):
            raise DnsError(
                DnsFailure.TIMEOUT, "the request's time budget is used up", cacheable=False
            )
        if name.startswith("nx."):
            return DnsAnswer((), self.negative_ttl, "NXDOMAIN")
        return DnsAnswer((DnsRecord(name, "A", "192.0.2.1"),), self.ttl)


def make(
    limits: CacheLimits | None = None, **upstream: float
) -> tuple[CachingResolver, Upstream, HandClock]:
    clock = HandClock()
    source = Upstream(**upstream)
    return CachingResolver(source, limits, clock=clock), source, clock


def test_a_second_question_within_the_ttl_is_answered_from_the_cache() -> None:
    cache, upstream, clock = make(ttl=300)
    first = cache.query("a.example", "A", FAR)
    clock.now += 299
    second = cache.query("A.Example.", "A", FAR)
    assert upstream.asked == [("a.example", "A")]
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.records == first.records
    assert second.expires == first.expires == 1300


def test_after_the_ttl_upstream_is_asked_again() -> None:
    cache, upstream, clock = make(ttl=300)
    cache.query("a.example", "A", FAR)
    clock.now += 300
    assert cache.query("a.example", "A", FAR).from_cache is False
    assert len(upstream.asked) == 2


@pytest.mark.parametrize(
    ("ttl", "limits", "kept"),
    [
        pytest.param(5, CacheLimits(min_ttl=60), 60, id="min-ttl-raises"),
        pytest.param(5000, CacheLimits(max_ttl=100), 100, id="max-ttl-caps"),
        pytest.param(0, CacheLimits(), 0, id="ttl-zero-not-kept"),
    ],
)
def test_positive_ttl_is_clamped(ttl: float, limits: CacheLimits, kept: float) -> None:
    cache, upstream, clock = make(limits, ttl=ttl)
    cache.query("a.example", "A", FAR)
    clock.now += kept - 0.5 if kept else 0
    cache.query("a.example", "A", FAR)
    assert len(upstream.asked) == (1 if kept else 2)
    clock.now += 1
    cache.query("a.example", "A", FAR)
    assert len(upstream.asked) == (2 if kept else 3)


@pytest.mark.parametrize(
    ("negative_ttl", "negative_ttl_max", "kept"),
    [(900, 3600, 900), (900, 60, 60), (0, 3600, 0)],
    ids=["soa-minimum", "capped", "no-soa"],
)
def test_negative_answers_live_for_the_soa_minimum(
    negative_ttl: float, negative_ttl_max: float, kept: float
) -> None:
    cache, _upstream, clock = make(
        CacheLimits(negative_ttl_max=negative_ttl_max, min_ttl=3000), negative_ttl=negative_ttl
    )
    answer = cache.query("nx.example", "TXT", FAR)
    assert (answer.records, answer.rcode) == ((), "NXDOMAIN")
    clock.now += max(kept - 0.5, 0)
    again = cache.query("nx.example", "TXT", FAR)
    assert again.from_cache is bool(kept)
    clock.now += 1
    assert cache.query("nx.example", "TXT", FAR).from_cache is False


def test_a_server_failure_is_kept_briefly_and_never_as_an_empty_answer() -> None:
    cache, upstream, clock = make()
    for _ in range(3):
        with pytest.raises(DnsError) as raised:
            cache.query("bad.example", "TXT", FAR)
        assert raised.value.failure is DnsFailure.SERVFAIL
    assert len(upstream.asked) == 1
    clock.now += FAILURE_TTL
    with pytest.raises(DnsError):
        cache.query("bad.example", "TXT", FAR)
    assert len(upstream.asked) == 2


def test_a_request_out_of_budget_teaches_the_cache_nothing() -> None:
    cache, upstream, _ = make()
    for _ in range(2):
        with pytest.raises(DnsError):
            cache.query("spent.example", "TXT", FAR)
    assert len(upstream.asked) == 2
    assert len(cache) == 0


def test_only_the_question_asked_is_cached() -> None:
    cache, upstream, _ = make()
    cache.query("a.example", "A", FAR)
    cache.query("a.example", "AAAA", FAR)
    assert upstream.asked == [("a.example", "A"), ("a.example", "AAAA")]


def test_the_cache_is_bounded_least_recently_used_out_first() -> None:
    cache, upstream, _ = make(CacheLimits(size=3))
    for name in ("a", "b", "c"):
        cache.query(f"{name}.example", "A", FAR)
    cache.query("a.example", "A", FAR)  # a is now the most recently used
    cache.query("d.example", "A", FAR)  # evicts b
    assert len(cache) == 3
    upstream.asked.clear()
    for name in ("a", "c", "d", "b"):
        cache.query(f"{name}.example", "A", FAR)
    assert upstream.asked == [("b.example", "A")]


def test_expired_entries_are_never_served_and_are_replaced() -> None:
    cache, upstream, clock = make(ttl=10)
    for index in range(5):
        cache.query(f"n{index}.example", "A", FAR)
    clock.now += 10
    answers = [cache.query(f"n{index}.example", "A", FAR) for index in range(5)]
    assert not any(answer.from_cache for answer in answers)
    assert len(upstream.asked) == 10
    assert len(cache) == 5  # replaced, not added


def test_concurrent_identical_questions_share_one_upstream_query() -> None:
    cache = CachingResolver(upstream := Upstream(delay=0.2))
    answers: list[DnsAnswer] = []
    barrier = threading.Barrier(30)

    def ask() -> None:
        barrier.wait()
        answers.append(cache.query("popular.example", "TXT", time.monotonic() + 10))

    threads = [threading.Thread(target=ask) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert upstream.asked == [("popular.example", "TXT")]
    assert len(answers) == 30
    assert {answer.records for answer in answers} == {answers[0].records}


def test_a_waiting_request_keeps_its_own_deadline() -> None:
    cache = CachingResolver(Upstream(delay=1.0))
    leader = threading.Thread(target=cache.query, args=("slow.example", "A", time.monotonic() + 10))
    leader.start()
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(DnsError) as raised:
        cache.query("slow.example", "A", time.monotonic() + 0.2)
    waited = time.monotonic() - started
    leader.join()
    assert raised.value.failure is DnsFailure.TIMEOUT
    assert raised.value.cacheable is False
    assert waited < 0.8  # its own 0.2 s, not the leader's 1 s


def test_followers_are_released_when_the_leader_crashes() -> None:
    class Broken(Upstream):
        def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
            time.sleep(0.2)
            raise RuntimeError("bug")

    cache = CachingResolver(Broken())
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.query("x.example", "A", time.monotonic() + 5)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert len(errors) == 5
    assert len(cache) == 0


def test_a_cached_failure_keeps_no_asker_alive() -> None:
    # Re-raising one stored exception would chain every asker's frames onto its traceback.
    cache, _, _ = make()

    class Request:
        """Stands for what a request's frames hold: its service, its message."""

    alive: list[weakref.ref[Request]] = []

    def ask() -> None:
        request = Request()
        alive.append(weakref.ref(request))
        with pytest.raises(DnsError):
            cache.query("bad.example", "A", FAR)

    for _ in range(50):
        ask()
    gc.collect()
    assert [ref for ref in alive if ref() is not None] == []


class HeldMultiplexer:
    """Keeps the questions asked ahead until the test answers them (answer())."""

    def __init__(self) -> None:
        self.asked: dict[tuple[str, str], Callable[[DnsOutcome], None]] = {}

    def ask(
        self, name: str, rdtype: str, deadline: float, done: Callable[[DnsOutcome], None]
    ) -> None:
        assert (name, rdtype) not in self.asked, "asked twice while in flight"
        self.asked[(name, rdtype)] = done

    def answer(self, name: str, rdtype: str, outcome: DnsOutcome) -> None:
        self.asked.pop((name, rdtype))(outcome)


def a_record(name: str, ttl: float = 300.0) -> DnsAnswer:
    return DnsAnswer((DnsRecord(name, "A", "192.0.2.1"),), ttl)


def held() -> tuple[CachingResolver, Upstream, HeldMultiplexer, HandClock]:
    clock = HandClock()
    multiplexer = HeldMultiplexer()
    upstream = Upstream()
    return (
        CachingResolver(upstream, multiplexer=multiplexer, clock=clock),
        upstream,
        multiplexer,
        clock,
    )


def test_prefetch_calls_ready_once_when_the_last_answer_has_landed() -> None:
    cache, upstream, multiplexer, _ = held()
    ready: list[bool] = []
    keys = [("one.example", "A"), ("two.example", "A"), ("one.example", "A")]
    assert cache.prefetch(keys, FAR, lambda: ready.append(True))
    assert sorted(multiplexer.asked) == [("one.example", "A"), ("two.example", "A")]
    multiplexer.answer("one.example", "A", a_record("one.example"))
    assert ready == []
    multiplexer.answer("two.example", "A", DnsAnswer((), 60.0, "NXDOMAIN"))
    assert ready == [True]
    # Both are cached now: answered without upstream, and nothing left to prefetch.
    assert cache.query("one.example", "A", FAR).from_cache
    assert cache.query("two.example", "A", FAR).records == ()
    assert upstream.asked == []
    assert not cache.prefetch(keys, FAR, lambda: ready.append(True))
    assert ready == [True]


def test_without_a_multiplexer_nothing_is_prefetched() -> None:
    cache, upstream, _ = make()
    assert not cache.prefetch([("one.example", "A")], FAR, lambda: None)
    assert upstream.asked == []


def test_a_thread_asking_meanwhile_shares_the_prefetched_question() -> None:
    cache, upstream, multiplexer, _ = held()
    ready: list[bool] = []
    assert cache.prefetch([("shared.example", "A")], FAR, lambda: ready.append(True))
    answers: list[DnsAnswer] = []
    asker = threading.Thread(
        target=lambda: answers.append(cache.query("shared.example", "A", cache.clock() + 10))
    )
    asker.start()
    time.sleep(0.1)
    assert answers == []  # waiting for the flight the prefetch started
    multiplexer.answer("shared.example", "A", a_record("shared.example"))
    asker.join(timeout=5)
    assert [answer.records[0].value for answer in answers] == ["192.0.2.1"]
    assert (upstream.asked, ready) == ([], [True])


def test_a_prefetch_joins_a_question_a_thread_is_asking() -> None:
    upstream = Upstream(delay=0.3)
    multiplexer = HeldMultiplexer()
    cache = CachingResolver(upstream, multiplexer=multiplexer)
    asker = threading.Thread(target=cache.query, args=("slow.example", "A", time.monotonic() + 10))
    asker.start()
    time.sleep(0.1)
    landed = threading.Event()
    assert cache.prefetch([("slow.example", "A")], FAR, landed.set)
    assert multiplexer.asked == {}  # no second question upstream
    assert landed.wait(timeout=5)
    asker.join(timeout=5)
    assert upstream.asked == [("slow.example", "A")]


def test_a_cached_failure_is_left_to_the_blocking_path() -> None:
    cache, _, multiplexer, _ = held()
    with pytest.raises(DnsError):
        cache.query("bad.example", "A", FAR)
    assert not cache.prefetch([("bad.example", "A"), ("new.example", "A")], FAR, lambda: None)
    assert multiplexer.asked == {}


def test_a_question_given_back_is_asked_again_by_a_waiting_thread() -> None:
    # A truncated reply: the multiplexer gives the question back; the blocking path retries it.
    cache, upstream, multiplexer, _ = held()
    ready = threading.Event()
    assert cache.prefetch([("big.example", "A")], FAR, ready.set)
    answers: list[DnsAnswer] = []
    asker = threading.Thread(
        target=lambda: answers.append(cache.query("big.example", "A", cache.clock() + 10))
    )
    asker.start()
    time.sleep(0.1)
    multiplexer.answer("big.example", "A", None)
    asker.join(timeout=5)
    assert ready.is_set()
    assert upstream.asked == [("big.example", "A")]
    assert len(answers) == 1
    assert not answers[0].from_cache


def test_a_prefetch_timed_out_at_its_deadline_is_not_remembered() -> None:
    cache, upstream, multiplexer, _ = held()
    assert cache.prefetch([("late.example", "A")], FAR, lambda: None)
    spent = DnsError(DnsFailure.TIMEOUT, "deadline", cacheable=False)
    multiplexer.answer("late.example", "A", spent)
    assert cache.query("late.example", "A", FAR).records  # asked again, not a cached failure
    assert upstream.asked == [("late.example", "A")]
