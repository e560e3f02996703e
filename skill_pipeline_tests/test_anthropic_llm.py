"""AnthropicLLM through the real anthropic SDK against the strict loopback fake of the Messages API."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter

import dagster as dg
import httpx
import pytest

from skill_pipeline.core.generation import SCENARIO_TOOL_SCHEMA
from skill_pipeline.core.scenario_writing import ScenarioGenerationError
from skill_pipeline.models import SCENARIOS_PER_DIFFICULTY, Scenario, Skill, TokenUsage, find_placeholder
from skill_pipeline.resources.llm_anthropic import AnthropicLLM
from skill_pipeline_tests.fakes.anthropic_server import API_VERSION, AnthropicFake, RateLimit

SKILL = Skill(id="skill-42", name="SQL joins", description="inner and outer joins, join keys, null handling")


def make_llm(fake: AnthropicFake, **overrides) -> AnthropicLLM:
    settings = {"api_key": fake.api_key, "base_url": fake.url, "max_concurrency": 10, "timeout_seconds": 5.0}
    settings.update(overrides)
    return AnthropicLLM(**settings)


def fake_usage(fake: AnthropicFake) -> TokenUsage:
    total = TokenUsage()
    for request in fake.requests:
        total = total + TokenUsage(**request.usage)
    return total


def all_texts_of_chain(exc: BaseException) -> str:
    """The message and repr of an exception and of everything chained to it."""
    parts, seen, current = [], set(), exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def test_a_skill_gets_fifty_valid_rows_through_the_sdk(anthropic_fake):
    llm = make_llm(anthropic_fake)
    generation = llm.generate([SKILL])[SKILL.id]

    rows = generation.rows
    assert len(rows) == 50
    assert Counter(r.difficulty for r in rows) == {d: SCENARIOS_PER_DIFFICULTY for d in range(1, 11)}
    assert len({r.item_key for r in rows}) == 50
    for row in rows:
        Scenario(scenario=row.scenario, expected_concepts=row.expected_concepts, difficulty=row.difficulty)
        assert 1 <= len(row.expected_concepts) <= 3
        assert (row.generator, row.model) == ("anthropic", "claude-haiku-4-5-20251001")
    assert generation.calls == 10 and anthropic_fake.calls == 10

    # What went over the wire is what the SDK sends and the fake checked (no violations at teardown).
    for request in anthropic_fake.requests:
        assert (request.method, request.path, request.status) == ("POST", "/v1/messages", 200)
        assert request.headers["authorization"] == "Bearer <redacted>"
        assert request.headers["anthropic-version"] == API_VERSION
        assert request.body["tool_choice"] == {"type": "tool", "name": "record_scenarios"}
        assert [t["name"] for t in request.body["tools"]] == ["record_scenarios"]
        assert request.body["tools"][0]["input_schema"] == SCENARIO_TOOL_SCHEMA
        assert request.body["max_tokens"] == 2000
        assert not {"temperature", "top_p", "top_k"} & set(request.body)
    assert sorted(r.ask.difficulty for r in anthropic_fake.requests) == list(range(1, 11))
    assert all(r.ask.skill_name == "SQL joins" and r.ask.count == 5 for r in anthropic_fake.requests)

    # Token usage is summed from every reply.
    assert generation.usage == fake_usage(anthropic_fake)
    assert generation.usage.input_tokens > 0 and generation.usage.output_tokens > 0


class InFlightGate:
    """A scenario responder for the fake that holds each request until ``bound`` are in flight.

    Requests are released in groups: when the ``bound``-th concurrent request arrives (or the last
    one expected, ``total``), every request waiting is let through. So a writer that keeps
    ``bound`` calls in flight reaches a peak of exactly ``bound`` however slow the machine is; no
    latency is simulated. A writer that never gets ``bound`` calls in flight at once is let go
    after ``wait_seconds`` with its lower peak (``timed_out``), and the test fails on it. Released
    requests linger up to ``linger_seconds`` for one more to arrive, so a writer that lets more
    than ``bound`` through shows a peak above ``bound``; a correct writer never does, however
    long or short the linger, so the wait cannot make the test flaky, only slower by the linger.
    """

    def __init__(
        self, fake: AnthropicFake, *, bound: int, total: int, wait_seconds: float = 30.0, linger_seconds: float = 0.2
    ) -> None:
        self.bound, self.total = bound, total
        self.wait_seconds, self.linger_seconds = wait_seconds, linger_seconds
        self.in_flight = self.peak = self.arrived = self.released_upto = 0
        self.timed_out = False
        self._cond = threading.Condition()
        self._respond = fake.responders["record_scenarios"]
        fake.responders["record_scenarios"] = self

    def __call__(self, prompt: str, body: dict) -> dict:
        with self._cond:
            self.in_flight += 1
            self.arrived += 1
            ticket = self.arrived
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= self.bound or self.arrived >= self.total:
                self.released_upto = self.arrived
            self._cond.notify_all()
            if not self.timed_out and not self._cond.wait_for(
                lambda: self.released_upto >= ticket, timeout=self.wait_seconds
            ):
                self.timed_out = True  # concurrency is broken: stop holding requests
            self._cond.wait_for(lambda: self.in_flight > self.bound, timeout=self.linger_seconds)
        try:
            return self._respond(prompt, body)
        finally:
            with self._cond:
                self.in_flight -= 1


def test_the_ten_difficulties_are_in_flight_together_within_the_bound(anthropic_fake):
    # Long timeouts and no retries: a held request must never time out and be sent again.
    gate = InFlightGate(anthropic_fake, bound=10, total=10)
    make_llm(anthropic_fake, max_concurrency=10, timeout_seconds=60.0, max_retries=0).generate([SKILL])
    assert anthropic_fake.calls == 10
    assert not gate.timed_out and gate.peak == 10

    # The measure is real: with a bound of 3, never more than 3 at once, yet 3 at once.
    bounded = AnthropicFake(api_key=anthropic_fake.api_key)
    gate = InFlightGate(bounded, bound=3, total=10)
    with bounded:
        make_llm(bounded, max_concurrency=3, timeout_seconds=60.0, max_retries=0).generate([SKILL])
    bounded.assert_clean()
    assert bounded.calls == 10 and anthropic_fake.calls == 10
    assert not gate.timed_out and gate.peak == 3


@pytest.mark.parametrize("kind", ["429", "529", "500"])
def test_transient_errors_recover_through_the_limiters_retries(anthropic_fake, kind):
    anthropic_fake.inject(kind, difficulty=3, retry_after="1")
    generation = make_llm(anthropic_fake).generate([SKILL])[SKILL.id]

    assert len(generation.rows) == 50
    first, second = anthropic_fake.requests_for(3)
    assert (first.status, first.fault, first.retry_count) == (int(kind), kind, 0)
    assert (second.status, second.fault, second.retry_count) == (200, None, 1)
    assert second.body == first.body  # the limiter repeated the call; generate did not re-ask
    assert generation.calls == 10 and anthropic_fake.calls == 11
    if kind == "429":
        # retry-after: 1 was honoured (the jitter adds to it, never takes from it).
        assert second.started - first.finished >= 0.9


def test_a_long_retry_after_is_capped(anthropic_fake):
    anthropic_fake.inject("429", difficulty=5, retry_after="120")
    generation = make_llm(anthropic_fake, max_retry_wait_seconds=0.2).generate([SKILL])[SKILL.id]
    assert len(generation.rows) == 50
    first, second = anthropic_fake.requests_for(5)
    assert first.status == 429 and second.status == 200
    assert second.started - first.finished < 5


def test_a_persistent_timeout_fails_naming_the_service_and_the_skill(anthropic_fake, caplog):
    caplog.set_level(logging.DEBUG)
    anthropic_fake.inject("timeout", times=None, sleep_seconds=10)
    llm = make_llm(anthropic_fake, timeout_seconds=0.3, max_retries=1)

    with pytest.raises(ScenarioGenerationError) as info:
        llm.generate([SKILL])

    message = str(info.value)
    assert "Anthropic" in message and SKILL.id in message
    assert "APITimeoutError" in message and "after 1 retries" in message
    # Each call that failed was tried once and retried once by the limiter, never more.
    per_difficulty = Counter(r.ask.difficulty for r in anthropic_fake.requests)
    assert max(per_difficulty.values()) == 2
    assert anthropic_fake.api_key not in all_texts_of_chain(info.value)
    assert anthropic_fake.api_key not in caplog.text


def test_an_authentication_error_is_not_retried_and_never_shows_the_key(anthropic_fake, caplog):
    caplog.set_level(logging.DEBUG)
    anthropic_fake.inject("401", times=None)
    llm = make_llm(anthropic_fake)

    with pytest.raises(ScenarioGenerationError) as info:
        llm.generate([SKILL])

    message = str(info.value)
    assert "Anthropic" in message and SKILL.id in message
    assert "HTTP 401 authentication_error (not retryable)" in message
    assert all(r.retry_count == 0 and r.status == 401 for r in anthropic_fake.requests)
    assert anthropic_fake.api_key not in all_texts_of_chain(info.value)
    assert anthropic_fake.api_key not in caplog.text
    assert anthropic_fake.api_key not in repr(llm)
    assert anthropic_fake.api_key not in json.dumps([vars(r) for r in anthropic_fake.requests], default=str)


@pytest.mark.parametrize("kind", ["malformed", "not_json", "truncated", "placeholder"])
def test_a_bad_reply_is_asked_again_for_what_is_missing(anthropic_fake, kind):
    anthropic_fake.inject(kind, difficulty=4, keep=2)
    generation = make_llm(anthropic_fake).generate([SKILL])[SKILL.id]

    first, second = anthropic_fake.requests_for(4)
    assert first.fault == kind and second.fault is None
    assert second.retry_count == 0  # a new call by generate, not a retry of the same call
    kept: list[str] = []
    if kind in ("truncated", "placeholder"):
        kept = [s["scenario"] for s in first.response["content"][0]["input"]["scenarios"]][:2]
    assert first.ask.count == 5 and first.ask.avoid == ()
    assert second.ask.count == 5 - len(kept)
    assert list(second.ask.avoid) == kept

    rows = generation.rows
    assert len(rows) == 50
    d4 = [r.scenario for r in rows if r.difficulty == 4]
    assert len(d4) == 5 and d4[: len(kept)] == kept
    for row in rows:
        assert find_placeholder(row.scenario) is None
        assert all(find_placeholder(c) is None for c in row.expected_concepts)
    assert generation.calls == 11
    assert generation.usage == fake_usage(anthropic_fake)  # the rejected reply's tokens are paid too


def test_a_text_reply_without_a_tool_call_is_still_parsed(anthropic_fake):
    anthropic_fake.inject("text", difficulty=2)
    generation = make_llm(anthropic_fake).generate([SKILL])[SKILL.id]
    assert len(anthropic_fake.requests_for(2)) == 1
    assert generation.calls == 10 and len(generation.rows) == 50


def test_replies_that_stay_bad_fail_after_max_attempts_without_placeholder_rows(anthropic_fake):
    # Every reply for difficulty 7 holds one good scenario and placeholders for the rest.
    anthropic_fake.inject("placeholder", times=None, difficulty=7, keep=1)
    llm = make_llm(anthropic_fake, max_attempts=3)

    with pytest.raises(ScenarioGenerationError) as info:
        llm.generate([SKILL])

    message = str(info.value)
    assert f"Anthropic: skill {SKILL.id} difficulty 7" in message
    assert "3 valid scenarios of 5 after 3 attempts" in message
    assert "placeholder text 'generic scenario'" in message
    attempts = anthropic_fake.requests_for(7)
    assert [r.ask.count for r in attempts] == [5, 4, 3]
    good = [r.response["content"][0]["input"]["scenarios"][0]["scenario"] for r in attempts]
    assert [list(r.ask.avoid) for r in attempts] == [[], good[:1], good[:2]]


def test_the_client_is_built_once_per_resource_even_under_concurrency(anthropic_fake):
    llm = make_llm(anthropic_fake)
    clients: list[object] = []
    barrier = threading.Barrier(16)

    def grab() -> None:
        barrier.wait()
        clients.append(llm._get_client())

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients) == 16 and len({id(c) for c in clients}) == 1
    client = clients[0]
    assert client.max_retries == 0 and client.timeout == 5.0  # the limiter retries, not the SDK
    llm.generate([SKILL])
    assert llm._get_client() is client

    # Dagster's teardown closes the pool; a later call builds a fresh client.
    llm.teardown_after_execution(None)
    assert client.is_closed()
    assert llm._get_client() is not client


def test_an_empty_key_fails_before_any_request(anthropic_fake):
    llm = make_llm(anthropic_fake, api_key="")
    with pytest.raises(ScenarioGenerationError, match="Anthropic.*api_key is empty"):
        llm.generate([SKILL])
    assert anthropic_fake.calls == 0


def test_the_resource_works_in_dagster_with_the_key_from_the_environment(anthropic_fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic_fake.api_key)

    @dg.asset
    def scenarios(llm: AnthropicLLM) -> int:
        return len(llm.generate([SKILL])[SKILL.id].rows)

    llm = AnthropicLLM(api_key=dg.EnvVar("ANTHROPIC_API_KEY"), base_url=anthropic_fake.url, max_concurrency=10)
    result = dg.materialize([scenarios], resources={"llm": llm})
    assert result.success
    assert result.output_for_node("scenarios") == 50
    assert anthropic_fake.calls == 10
    events = "\n".join(str(event) for event in result.all_events)
    assert anthropic_fake.api_key not in events


# -- under a rate limit ------------------------------------------------------------------------

SKILLS = [
    Skill(id=f"skill-rl-{i}", name=f"Topic {i}", description=f"the concepts of topic {i}, applied") for i in range(3)
]


def _generate_concurrently(llms: list[AnthropicLLM], skills: list[Skill]) -> dict[str, object]:
    """Each skill generated by its own resource in its own thread, as concurrent runs of one process would."""
    results: dict[str, object] = {}

    def one(llm: AnthropicLLM, skill: Skill) -> None:
        try:
            results[skill.id] = llm.generate([skill])[skill.id]
        except Exception as exc:  # collected: the test names what failed
            results[skill.id] = exc

    threads = [threading.Thread(target=one, args=(llm, skill)) for llm, skill in zip(llms, skills)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_concurrent_generations_under_a_rate_limit_all_succeed_and_nothing_is_lost():
    # 3 requests a second at the fake; three skills (30 calls) generated at once by three resources
    # that know nothing of the limit but what the headers and the 429s tell them: the first wave of
    # 8 goes out before any header arrives, and most of it is rejected at the same instant.
    with AnthropicFake(rate_limit=RateLimit(requests=3, window_seconds=1.0), latency_seconds=0.05) as fake:
        llms = [make_llm(fake, max_concurrency=10, max_in_flight=8, retry_deadline_seconds=120) for _ in SKILLS]
        results = _generate_concurrently(llms, SKILLS)
    fake.assert_clean()

    failed = {k: v for k, v in results.items() if isinstance(v, Exception)}
    assert not failed, failed
    assert all(len(results[s.id].rows) == 50 for s in SKILLS)

    # The limit bound: the fake answered 429s, with retry-after and its error shape.
    rejected = fake.rejected_by_limit()
    # At least one 429: how many depends on how the first wave is staggered by the machine's load.
    assert len(rejected) >= 1, "the rate limit never bound: the test proves nothing"
    for request in rejected:
        assert request.status == 429 and request.response["error"]["type"] == "rate_limit_error"

    # Nothing lost, nothing paid twice: each difficulty of each skill answered exactly once.
    answered = [r for r in fake.requests if r.status == 200]
    assert len(answered) == 30 == sum(results[s.id].calls for s in SKILLS)
    assert Counter((r.ask.skill_name, r.ask.difficulty) for r in answered) == {
        (s.name, d): 1 for s in SKILLS for d in range(1, 11)
    }
    assert all(r.status in (200, 429) for r in fake.requests)

    # One limiter for the process: the three resources shared it, and it kept the in-flight bound.
    limiter = llms[0].limiter()
    assert all(llm.limiter() is limiter for llm in llms)
    assert fake.peak_in_flight <= 8 and fake.max_in_flight() <= 8
    stats = llms[0].rate_limit_stats()
    assert stats["max_in_flight"] <= 8
    assert stats["succeeded"] == 30 and stats["failed"] == 0
    assert stats["rate_limited"] == len(rejected) and stats["retries"] == len(rejected)
    assert stats["requests_per_minute"] == 180  # learnt from the headers: 3 a second
    # Rejections stay a small share of the work (the bar: at most 0.3 per accepted request).
    assert len(rejected) <= 0.3 * len(answered)

    # Calls rejected together were retried apart (jitter, then the learnt pace), not in one instant.
    retried = sorted(r.started for r in fake.requests if r.retry_count > 0)
    assert len(retried) == len(rejected)
    if len(retried) > 1:  # one rejection alone (a loaded machine paces the calls itself) has no spread
        assert retried[-1] - retried[0] > 0.2
    assert len({round(t, 3) for t in retried}) == len(retried)


def test_a_configured_rate_keeps_rejections_rare():
    # The same fake limit, now configured in the resource: it paces instead of being told.
    with AnthropicFake(rate_limit=RateLimit(requests=5, window_seconds=1.0)) as fake:
        llm = make_llm(fake, requests_per_minute=240, burst_seconds=1, max_in_flight=4)
        generation = llm.generate([SKILL])[SKILL.id]
    fake.assert_clean()
    assert len(generation.rows) == 50
    accepted = sum(1 for r in fake.requests if r.status == 200)
    assert accepted == 10
    assert len(fake.rejected_by_limit()) <= 0.3 * accepted


def test_an_output_token_limit_binds_through_max_tokens_and_is_waited_out():
    # 6,000 output tokens a second and max_tokens 2,000: three calls at once by their reservations,
    # though each writes only a few hundred tokens. burst_seconds=1 mirrors the fake's 1 s window.
    limit = RateLimit(requests=1000, window_seconds=1.0, output_tokens=6000)
    with AnthropicFake(rate_limit=limit, latency_seconds=0.2) as fake:
        llm = make_llm(fake, max_in_flight=10, burst_seconds=1, retry_deadline_seconds=120)
        generation = llm.generate([SKILL])[SKILL.id]
    fake.assert_clean()
    assert len(generation.rows) == 50
    assert sum(1 for r in fake.requests if r.status == 200) == 10
    rejected = fake.rejected_by_limit()
    assert all("output tokens" in r.response["error"]["message"] for r in rejected)
    stats = llm.rate_limit_stats()
    assert stats["output_tokens_per_minute"] == 360_000  # learnt from the headers
    assert stats["succeeded"] == 10 and stats["rate_limited"] == len(rejected)


def test_the_fake_sends_rate_limit_headers_and_answers_429_like_the_service(anthropic_fake):
    anthropic_fake.limit_rate(RateLimit(requests=2, window_seconds=60))
    url, headers = f"{anthropic_fake.url}/v1/messages", _raw_headers(anthropic_fake)
    responses = [httpx.post(url, headers=headers, json=_raw_body()) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    first, _, rejected = responses
    assert first.headers["anthropic-ratelimit-requests-limit"] == "2"
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
    for word in ("requests", "input-tokens", "output-tokens"):
        for part in ("limit", "remaining", "reset"):
            assert f"anthropic-ratelimit-{word}-{part}" in first.headers
    reset = first.headers["anthropic-ratelimit-requests-reset"]
    assert reset.endswith("Z") and "T" in reset
    assert rejected.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": rejected.json()["error"]["message"]},
    }
    assert int(rejected.headers["retry-after"]) >= 1
    assert rejected.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert anthropic_fake.violations == []  # a 429 is the service's behaviour, not a protocol violation
    # Still strict under a limit: a bad request is rejected and recorded, not rate-limited.
    anthropic_fake.limit_rate(None)
    assert httpx.post(url, headers=headers, json=_raw_body(temperature=0.5)).status_code == 400
    assert len(anthropic_fake.violations) == 1
    anthropic_fake.clear_violations()
    assert len(anthropic_fake.arrival_times()) == 4


def test_a_bad_request_fails_at_once_naming_the_status(anthropic_fake):
    anthropic_fake.inject("400", times=None)
    llm = make_llm(anthropic_fake, retry_deadline_seconds=1800)
    started = time.monotonic()
    with pytest.raises(ScenarioGenerationError) as info:
        llm.generate([SKILL])
    assert "HTTP 400 invalid_request_error (not retryable)" in str(info.value)
    assert "Anthropic" in str(info.value) and SKILL.id in str(info.value)
    assert all(r.retry_count == 0 and r.status == 400 for r in anthropic_fake.requests)
    assert len(anthropic_fake.requests) <= 10  # one attempt per difficulty at most, never again
    assert time.monotonic() - started < 30  # nowhere near the retry deadline


def test_a_rate_limit_outlasting_the_deadline_fails_saying_so(anthropic_fake):
    anthropic_fake.inject("429", times=None, retry_after="2")
    llm = make_llm(anthropic_fake, retry_deadline_seconds=1, max_concurrency=1)
    with pytest.raises(ScenarioGenerationError) as info:
        llm.generate([SKILL])
    message = str(info.value)
    assert "HTTP 429 rate_limit_error after 0 retries" in message and "retry deadline 1 s" in message


def test_the_limiter_fields_reach_the_dagster_config_schema():
    fields = AnthropicLLM.to_config_schema().as_field().config_type.fields
    for name in ("requests_per_minute", "output_tokens_per_minute", "max_in_flight", "retry_deadline_seconds", "rate_limit_share"):
        assert fields[name].description, name
    llm = AnthropicLLM(api_key="sk-x", requests_per_minute=50, rate_limit_share=0.25, max_retries=3)
    config = llm.rate_limit_config()
    assert (config.requests_per_minute, config.share, config.max_error_retries) == (50, 0.25, 3)
    with pytest.raises(Exception):
        AnthropicLLM(api_key="sk-x", max_in_flight=0)


def test_resources_share_a_limiter_per_key_and_endpoint(anthropic_fake):
    one, two = make_llm(anthropic_fake), make_llm(anthropic_fake)
    assert one.limiter() is two.limiter()
    with AnthropicFake(api_key=anthropic_fake.api_key) as other:
        assert make_llm(other).limiter() is not one.limiter()
    assert make_llm(anthropic_fake, api_key="sk-ant-other-key").limiter() is not one.limiter()


# -- the fake's strictness --------------------------------------------------------------------


def _raw_body(**changes) -> dict:
    body = {
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "SKILL: X\nDIFFICULTY LEVEL: 1/10\nGenerate 1 diverse scenarios"}],
        "tools": [{"name": "record_scenarios", "input_schema": SCENARIO_TOOL_SCHEMA}],
        "tool_choice": {"type": "tool", "name": "record_scenarios"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _raw_headers(fake: AnthropicFake, **changes) -> dict:
    headers = {
        "authorization": f"Bearer {fake.api_key}",
        "anthropic-version": API_VERSION,
        "content-type": "application/json",
    }
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


def test_the_fake_rejects_temperature_and_records_it(anthropic_fake):
    response = httpx.post(
        f"{anthropic_fake.url}/v1/messages", headers=_raw_headers(anthropic_fake), json=_raw_body(temperature=0.7)
    )
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert len(anthropic_fake.violations) == 1 and "temperature" in anthropic_fake.violations[0]
    anthropic_fake.clear_violations()


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "fragment"),
    [
        ("GET", "/v1/messages", {}, None, 405, "method GET"),
        ("POST", "/v1/complete", {}, {}, 404, "is not /v1/messages"),
        ("POST", "/v1/messages", {"authorization": None}, {}, 401, "Authorization header is missing"),
        ("POST", "/v1/messages", {"authorization": "Bearer sk-wrong"}, {}, 401, "invalid bearer token"),
        ("POST", "/v1/messages", {"x-api-key": "sk-any"}, {}, 401, "x-api-key"),
        ("POST", "/v1/messages", {"anthropic-version": None}, {}, 400, "anthropic-version: header is required"),
        ("POST", "/v1/messages", {"anthropic-version": "2023-06-01"}, {}, 400, "is not 2026-10-21"),
        ("POST", "/v1/messages", {}, {"model": None}, 400, "model: Field required"),
        ("POST", "/v1/messages", {}, {"max_tokens": None}, 400, "max_tokens: Field required"),
        ("POST", "/v1/messages", {}, {"messages": None}, 400, "messages: Field required"),
        ("POST", "/v1/messages", {}, {"top_k": 5}, 400, "top_k"),
        ("POST", "/v1/messages", {}, {"foo": 1}, 400, "foo: Extra inputs"),
        ("POST", "/v1/messages", {}, {"tool_choice": {"type": "tool", "name": "other"}}, 400, "'other' is not in tools"),
        ("POST", "/v1/messages", {}, {"stream": True}, 400, "stream"),
    ],
)
def test_the_fake_rejects_what_the_service_would(anthropic_fake, method, path, headers, body, status, fragment):
    response = httpx.request(
        method,
        f"{anthropic_fake.url}{path}",
        headers=_raw_headers(anthropic_fake, **headers),
        json=_raw_body(**body) if body is not None else None,
    )
    assert response.status_code == status
    assert response.json()["type"] == "error"
    assert len(anthropic_fake.violations) == 1 and fragment in anthropic_fake.violations[0]
    assert anthropic_fake.api_key not in anthropic_fake.violations[0]
    anthropic_fake.clear_violations()


def test_the_fake_accepts_a_correct_raw_request(anthropic_fake):
    response = httpx.post(f"{anthropic_fake.url}/v1/messages", headers=_raw_headers(anthropic_fake), json=_raw_body())
    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message" and message["stop_reason"] == "tool_use"
    assert message["content"][0]["type"] == "tool_use" and message["content"][0]["id"].startswith("toolu_")
    assert len(message["content"][0]["input"]["scenarios"]) == 1
    assert anthropic_fake.violations == []


def test_an_unserved_scripted_fault_fails_the_test():
    with AnthropicFake() as fake:
        fake.inject("529", difficulty=9)
    assert any("never served: 529" in p for p in fake.problems())
