"""A loopback Anthropic Messages API: strict about what it accepts, scriptable in how it fails.

What it accepts was taken from a request the installed SDK really sent (anthropic 2.13.0, logged
against a bare socket server): ``POST /v1/messages`` with ``Authorization: Bearer <key>`` (no
``x-api-key``), ``anthropic-version: 2026-10-21``, ``Content-Type: application/json`` and a JSON body
holding only the keys ``messages.create`` serialises (``max_tokens``, ``messages``, ``model``,
``tools``, ``tool_choice``, ...). Anything else is answered as the service would (400/401/404/405
with its error shape) *and* recorded in ``violations``, which the ``anthropic_fake`` fixture turns
into a test failure: the SDK does not retry a 4xx, so a violation would otherwise surface only as a
confusing generation error, or not at all.

It writes good answers by itself: a ``record_scenarios`` call gets the count of distinct, valid
scenarios its prompt asks for (skill, difficulty, count and the already accepted ones are read
from the prompt of ``core.generation``). A ``record_challenge`` call (the experiment's challenge
writer) gets a multiple-choice challenge that does what its prompt asks and no more: set in the
prompt's scenario and naming its concepts, with the option count, explanation and stated
difficulty the prompt asks for (a terse prompt gets a terse challenge, so prompt versions score
differently). A ``record_difficulty`` call (the judge) gets the difficulty the challenge was
written for -- a well-calibrated judge -- or, for a challenge it did not write, one read from the
question's length. Faults are scripted with ``inject`` and served to the
next matching requests: rate limits, overload, server errors, timeouts, and replies that are
malformed, truncated or filled with placeholder text.

Requests are served concurrently (one thread per connection), with an optional fixed latency, so
the same fake measures concurrency in the benchmarks; ``peak_in_flight`` and each request's arrival
time (``RecordedRequest.started``) are recorded.

Rate limits are enforced the way Anthropic enforces them (``limit_rate``): continuously refilled
buckets of requests and output tokens per window, a request admitted against output tokens by its
``max_tokens`` and settled to the real count when it is answered, a request over the limit answered
429 ``rate_limit_error`` with an integer ``retry-after``, and ``anthropic-ratelimit-*`` headers
(limit per minute, remaining, reset in RFC 3339) on every response to a valid request. Without a
configured limit the headers report a budget too large to bind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import pytest
from pytest_httpserver import HTTPServer
from rapidfuzz import fuzz, process, utils
from pytest_httpserver.httpserver import METHOD_ALL
from werkzeug import Request, Response

# What anthropic 2.13.0 sends (see the module docstring); a new SDK that sends something else
# must be looked at, not silently accepted.
API_VERSION = "2026-10-21"
MESSAGES_PATH = "/v1/messages"

# The body keys ``Messages.create`` of anthropic 2.13 can serialise.
ALLOWED_BODY_KEYS = frozenset(
    {
        "max_tokens",
        "messages",
        "model",
        "cache_control",
        "container",
        "diagnostics",
        "inference_geo",
        "metadata",
        "output_config",
        "service_tier",
        "speed",
        "stop_sequences",
        "stream",
        "system",
        "thinking",
        "tool_choice",
        "tools",
    }
)
# Sampling parameters the SDK no longer takes: a request holding them was hand-built or came from
# an old client, and the pipeline must get variety from the prompt instead.
FORBIDDEN_BODY_KEYS = ("temperature", "top_p", "top_k")
MODEL_MAX_OUTPUT_TOKENS = 64_000
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

FaultKind = Literal[
    "429",  # rate_limit_error with retry-after
    "529",  # overloaded_error
    "500",  # api_error
    "401",  # authentication_error (not retried by the SDK)
    "400",  # invalid_request_error (not retried)
    "timeout",  # answer only after sleep_seconds (longer than the client's timeout)
    "malformed",  # a tool call whose input is not the shape asked for
    "not_json",  # no tool call: prose that holds no JSON
    "text",  # no tool call: the answer as prose with a fenced JSON array (the parser's fallback)
    "truncated",  # fewer scenarios than asked, stop_reason max_tokens
    "placeholder",  # the seed's "Generic scenario N" fallback text in place of scenarios
]
CONTENT_FAULTS = frozenset({"malformed", "not_json", "text", "truncated", "placeholder"})


@dataclass
class Fault:
    """A scripted misbehaviour for the next ``times`` matching requests (``None``: all of them)."""

    kind: FaultKind
    times: int | None = 1
    difficulty: int | None = None
    retry_after: str = "1"
    keep: int = 2
    sleep_seconds: float = 30.0
    tool: str | None = None  # only requests forcing this tool (None: any)
    skill_name: str | None = None  # only scenario requests for this skill (None: any)
    served: int = 0

    def matches(self, ask: ScenarioAsk | None, tool: str | None = None) -> bool:
        if self.times is not None and self.served >= self.times:
            return False
        if self.tool is not None and tool != self.tool:
            return False
        if self.skill_name is not None and (ask is None or ask.skill_name != self.skill_name):
            return False
        if self.difficulty is None:
            return True
        return ask is not None and ask.difficulty == self.difficulty


@dataclass(frozen=True)
class ScenarioAsk:
    """What a scenario prompt asks for, read back from the prompt text."""

    skill_name: str
    difficulty: int
    count: int
    avoid: tuple[str, ...]


@dataclass
class RecordedRequest:
    """One request as the fake saw it; secrets are redacted before it is stored."""

    index: int
    started: float
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    ask: ScenarioAsk | None = None
    fault: str | None = None
    status: int = 0
    finished: float = 0.0
    response: dict[str, Any] | None = None
    reserved_output: int = 0  # output tokens held against the rate limit until answered

    @property
    def retry_count(self) -> int:
        return int(self.headers.get("x-stainless-retry-count", "0"))

    @property
    def usage(self) -> dict[str, int]:
        if self.status == 200 and self.response:
            return dict(self.response["usage"])
        return {"input_tokens": 0, "output_tokens": 0}


Responder = Callable[[str, dict[str, Any]], dict[str, Any]]


_SKILL_LINE = re.compile(r"^SKILL: (.+)$", re.MULTILINE)
_DIFFICULTY_LINE = re.compile(r"^DIFFICULTY LEVEL: (\d+)/10$", re.MULTILINE)
_COUNT = re.compile(r"Generate (\d+) diverse scenarios")
_AVOID = re.compile(r"These scenarios already exist; write different ones:\n((?:- .*\n?)+)")


def parse_scenario_prompt(prompt: str) -> ScenarioAsk | None:
    """Skill, difficulty, count and avoided scenarios of a ``core.generation`` prompt, or None."""
    skill, difficulty, count = _SKILL_LINE.search(prompt), _DIFFICULTY_LINE.search(prompt), _COUNT.search(prompt)
    if not (skill and difficulty and count):
        return None
    avoid_match = _AVOID.search(prompt)
    avoid = tuple(line[2:] for line in avoid_match.group(1).splitlines() if line.startswith("- ")) if avoid_match else ()
    return ScenarioAsk(skill.group(1).strip(), int(difficulty.group(1)), int(count.group(1)), avoid)


_SITUATIONS = (
    "a code review before a release",
    "an on-call shift with a paging alert",
    "a customer demo that goes off script",
    "a data migration between two systems",
    "a security audit of a partner integration",
    "a quarterly planning meeting",
    "a mentoring session with a new hire",
    "a post-incident review",
    "a cost review of the cloud bill",
    "a vendor evaluation with a short deadline",
    "a compliance check before an external audit",
    "a performance regression reported by users",
)
_ANGLES = (
    "choosing between two plausible approaches",
    "explaining a decision to a sceptical stakeholder",
    "finding why an expected result did not appear",
    "adapting a known method to unusual constraints",
    "spotting the flaw in a colleague's proposal",
    "balancing speed against correctness",
)
# One stake per difficulty: scenarios of two difficulties differ in more than the level's number,
# as a real model's do (the pipeline drops a near duplicate and asks again: core.near_duplicates).
_STAKES = (
    "with a friendly reviewer watching", "before lunch on a quiet day", "for a team wiki page",
    "while a manager waits for the answer", "with real customers affected", "under a tight contractual deadline",
    "where money is lost every hour", "in front of the whole engineering department",
    "with regulators asking questions", "that sets precedent for the entire company",
)
_ASPECTS = ("trade-offs", "failure modes", "verification", "communication", "prioritisation", "edge cases")


def _candidate(skill_name: str, difficulty: int, k: int) -> dict[str, Any]:
    situation = _SITUATIONS[(k + difficulty) % len(_SITUATIONS)]
    angle = _ANGLES[(k * 5 + k // len(_SITUATIONS) + difficulty) % len(_ANGLES)]
    text = (
        f"During {situation}, someone practising {skill_name} is {angle} "
        f"{_STAKES[(difficulty - 1) % len(_STAKES)]}, at level {difficulty} of 10 (case {k + 1})."
    )
    concepts = [f"{skill_name} {_ASPECTS[(k + j) % len(_ASPECTS)]}" for j in range(1 + k % 3)]
    return {"scenario": text, "expected_concepts": concepts, "difficulty": difficulty}


def _near(text: str, others: list[str]) -> bool:
    return bool(others) and process.extractOne(
        text, others, scorer=fuzz.token_set_ratio, processor=utils.default_process, score_cutoff=90
    ) is not None


@functools.lru_cache(maxsize=64)
def _plan(skill_name: str) -> dict[int, list[str]]:
    """Per difficulty, the first five candidates that are not near duplicates of any chosen for the
    skill (as a real model's varied output is not): the pipeline drops near duplicates and asks again."""
    chosen: dict[int, list[str]] = {}
    texts: list[str] = []
    for d in range(1, 11):
        chosen[d] = []
        for k in range(_PLAN_CANDIDATES):
            text = _candidate(skill_name, d, k)["scenario"]
            if len(chosen[d]) < 5 and not _near(text, texts):
                chosen[d].append(text)
                texts.append(text)
    return chosen


_PLAN_CANDIDATES = 72


def write_scenarios(ask: ScenarioAsk, count: int | None = None) -> list[dict[str, Any]]:
    """``count`` (default: what was asked) distinct valid scenarios, none of them in ``ask.avoid``:
    the skill's planned ones first, then candidates that are no near duplicate of the plan or avoid."""
    wanted = ask.count if count is None else count
    avoid = {a.casefold() for a in ask.avoid}
    plan = _plan(ask.skill_name)
    planned = set(plan.get(ask.difficulty, []))
    rows = [_candidate(ask.skill_name, ask.difficulty, k) for k in range(_PLAN_CANDIDATES)]
    ordered = [r for r in rows if r["scenario"] in planned]
    first = [r for r in ordered if r["scenario"].casefold() not in avoid][:wanted]
    if len(first) == wanted:  # the usual first ask: the plan alone (the near-duplicate scan costs ~15 ms)
        return first
    others = [t for texts in plan.values() for t in texts] + list(ask.avoid)
    ordered += [r for r in rows if r["scenario"] not in planned and not _near(r["scenario"], others)]
    ordered += [r for r in rows if r not in ordered] + [
        _candidate(ask.skill_name, ask.difficulty, k) for k in range(_PLAN_CANDIDATES, _PLAN_CANDIDATES + 50)
    ]
    out = [r for r in ordered if r["scenario"].casefold() not in avoid][:wanted]
    assert len(out) == wanted, "unreachable"
    return out


@dataclass(frozen=True)
class ChallengeAsk:
    """What a challenge-generation prompt (``skill_pipeline.challenge_prompt``) asks for."""

    skill_name: str
    difficulty: int
    scenario: str | None
    concepts: tuple[str, ...]
    option_count: int
    max_length: int | None
    wants_explanation: bool
    wants_difficulty: bool


_CHALLENGE_SKILL = re.compile(r"^SKILL: (.+)$", re.MULTILINE)
_CHALLENGE_DIFFICULTY = re.compile(r"^DIFFICULTY: (\d+)/10", re.MULTILINE)
_TERSE_ASK = re.compile(r"multiple-choice question about (.+?) at difficulty (\d+)/10")
_SCENARIO_BLOCK = re.compile(r"^SCENARIO[^\n]*:\n(.+?)\n\n", re.MULTILINE | re.DOTALL)
_CONCEPT_BLOCK = re.compile(r"^CONCEPTS TO COVER[^\n]*:\n((?:- .*(?:\n|$))+)", re.MULTILINE)
_OPTION_COUNT = re.compile(r"Exactly (\d+) answer options")
_LENGTH_BOUNDS = re.compile(r"between (\d+) and (\d+) characters")


def parse_challenge_prompt(prompt: str) -> ChallengeAsk | None:
    """Skill, difficulty, scenario, concepts and requirements of a challenge prompt, or None."""
    skill, difficulty = _CHALLENGE_SKILL.search(prompt), _CHALLENGE_DIFFICULTY.search(prompt)
    if skill and difficulty:
        skill_name, level = skill.group(1).strip(), int(difficulty.group(1))
    else:
        terse = _TERSE_ASK.search(prompt)
        if terse is None:
            return None
        skill_name, level = terse.group(1).strip(), int(terse.group(2))
    scenario_match = _SCENARIO_BLOCK.search(prompt)
    scenario = scenario_match.group(1).strip() if scenario_match else None
    if scenario in ("", "(no scenario)"):
        scenario = None
    concept_match = _CONCEPT_BLOCK.search(prompt)
    concept_lines = concept_match.group(1).splitlines() if concept_match else []
    concepts = tuple(line[2:].strip() for line in concept_lines if line.startswith("- "))
    count = _OPTION_COUNT.search(prompt)
    bounds = _LENGTH_BOUNDS.search(prompt)
    return ChallengeAsk(
        skill_name=skill_name,
        difficulty=level,
        scenario=scenario,
        concepts=concepts,
        option_count=int(count.group(1)) if count else 4,
        max_length=int(bounds.group(2)) if bounds else None,
        wants_explanation="explanation" in prompt.casefold(),
        wants_difficulty='"difficulty"' in prompt,
    )


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _join(phrases: tuple[str, ...] | list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def write_challenge(ask: ChallengeAsk) -> dict[str, Any]:
    """A challenge doing what ``ask`` asks: set in its scenario, naming its concepts, with the option
    count, explanation and stated difficulty it asks for, and nothing it does not ask for."""
    focus = _join(ask.concepts) if ask.concepts else f"the core practice of {ask.skill_name}"
    if ask.scenario and ask.scenario.endswith("?") and not ask.concepts:
        question = ask.scenario  # a real-world item: its scenario is the question users validated
    elif ask.scenario:
        tail = f" Which approach best applies {focus} here?"
        context = ask.scenario
        if ask.max_length is not None and len(context) + len(tail) > ask.max_length:
            context = context[: max(0, ask.max_length - len(tail) - 1)].rsplit(" ", 1)[0] + "…"
        question = context + tail
    else:
        question = f"Which statement about {ask.skill_name} is correct at level {ask.difficulty} of 10?"
    anchor = ask.concepts[0] if ask.concepts else ask.skill_name
    correct = f"Apply {focus} deliberately and check the result against the situation"
    distractors = [
        f"Skip {anchor} and rely on the default behaviour",
        f"Apply {anchor} only once the problem has been escalated",
        f"Treat {anchor} as irrelevant to this situation",
        "Copy an approach from an unrelated field without adapting it",
        "Wait for more information before doing anything at all",
    ]
    count = max(2, min(ask.option_count, 1 + len(distractors)))
    correct_index = int(hashlib.sha256(question.encode()).hexdigest(), 16) % count
    options = distractors[: count - 1]
    options.insert(correct_index, correct)
    challenge: dict[str, Any] = {"question": question, "options": options, "correct_index": correct_index}
    if ask.wants_explanation:
        challenge["explanation"] = (
            f"The correct option applies {focus} to the situation described; the others skip it, "
            "postpone it until it is too late, or ignore the context."
        )
    if ask.wants_difficulty:
        challenge["difficulty"] = ask.difficulty
    return challenge


def parse_judge_prompt(prompt: str) -> tuple[str, list[str]] | None:
    """The question and options of a difficulty-judge prompt, or None (plain slicing: the sections
    are fixed headings of ``DIFFICULTY_JUDGE_PROMPT``)."""
    if "scale of 1 to 10" not in prompt:
        return None
    try:
        question_at = prompt.index("\nQUESTION:\n") + len("\nQUESTION:\n")
        options_at = prompt.index("\n\nOPTIONS:\n", question_at)
        correct_at = prompt.index("\n\nCORRECT OPTION:", options_at)
    except ValueError:
        return None
    question = prompt[question_at:options_at].strip()
    block = prompt[options_at + len("\n\nOPTIONS:\n") : correct_at]
    options = [re.sub(r"^\d+\. ", "", line) for line in block.splitlines() if line.strip()]
    return question, options


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


class _Reject(Exception):
    """A request answered with an error and recorded as a violation (of the protocol, or of what
    the fake can answer: then with ``x-should-retry: false`` so the SDK gives up at once)."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.headers = headers or {}


def _gap(message: str) -> _Reject:
    return _Reject(500, "api_error", f"fake cannot answer: {message}", {"x-should-retry": "false"})


class _QuickStopHTTPServer(HTTPServer):
    """pytest-httpserver's server, polling for shutdown every 20 ms instead of 500 ms: each test
    starts and stops a fake, and half a second per stop adds up."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.02)


# What the headers report when no limit is set: far more than any test or benchmark sends.
UNBOUNDED_REQUESTS_PER_MINUTE = 1_000_000
UNBOUNDED_TOKENS_PER_MINUTE = 1_000_000_000


class _TokenBucket:
    """A budget of ``capacity`` per ``window_seconds``, refilled continuously (Anthropic's model)."""

    def __init__(self, capacity: float, window_seconds: float) -> None:
        self.capacity, self.window_seconds = float(capacity), float(window_seconds)
        self.level, self.updated = float(capacity), time.monotonic()

    @property
    def per_second(self) -> float:
        return self.capacity / self.window_seconds

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now

    def seconds_until(self, amount: float) -> float:
        return max(0.0, (min(amount, self.capacity) - self.level) / self.per_second)

    def headers(self, word: str, now: float, wall: float) -> dict[str, str]:
        full_at = wall + (self.capacity - self.level) / self.per_second
        return {
            f"anthropic-ratelimit-{word}-limit": str(int(self.capacity * 60 / self.window_seconds)),
            f"anthropic-ratelimit-{word}-remaining": str(max(0, int(self.level))),
            f"anthropic-ratelimit-{word}-reset": _rfc3339(full_at),
        }


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RateLimit:
    """``requests`` and (optionally) ``output_tokens`` per ``window_seconds``, as continuously refilled buckets."""

    requests: int
    window_seconds: float = 60.0
    output_tokens: int | None = None


class AnthropicFake:
    """The fake service. Use it as a context manager, or through the ``anthropic_fake`` fixture.

    ``api_key`` is what it expects after ``Bearer``; ``url`` is the ``base_url`` to give the SDK.
    """

    def __init__(
        self, *, api_key: str | None = None, latency_seconds: float = 0.0, rate_limit: RateLimit | None = None
    ) -> None:
        self.api_key = api_key or f"sk-ant-test-{uuid.uuid4().hex}"
        self.latency_seconds = latency_seconds
        self.peak_in_flight = 0
        self._in_flight = 0
        self._limit: RateLimit | None = None
        self._request_bucket: _TokenBucket | None = None
        self._output_bucket: _TokenBucket | None = None
        self._initial_limit = rate_limit
        self.violations: list[str] = []
        self.responders: dict[str, Responder] = {
            "record_scenarios": self._scenario_responder,
            "record_challenge": self._challenge_responder,
            "record_difficulty": self._difficulty_responder,
        }
        # question (normalised) -> the difficulty it was written for, for the judge.
        self._written: dict[str, int] = {}
        self._written_lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _QuickStopHTTPServer(host="127.0.0.1", port=0, threaded=True)
        # One permanent handler for every path and method: the fake answers wrong ones itself,
        # in the service's error shape, and records them as violations.
        self._server.expect_request(re.compile(".*"), method=METHOD_ALL).respond_with_handler(self._handle)
        self.limit_rate(self._initial_limit)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> AnthropicFake:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on latency or a timeout fault
        if self._server.is_running():
            self._server.stop()

    def __enter__(self) -> AnthropicFake:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    # -- scripting and inspection --------------------------------------------------------------

    def inject(
        self,
        kind: FaultKind,
        *,
        times: int | None = 1,
        difficulty: int | None = None,
        tool: str | None = None,
        **params: Any,
    ) -> Fault:
        """Serve ``kind`` to the next ``times`` requests (for ``difficulty`` / forcing ``tool`` only, if given)."""
        fault = Fault(kind=kind, times=times, difficulty=difficulty, tool=tool, **params)
        with self._lock:
            self._faults.append(fault)
        return fault

    def limit_rate(self, limit: RateLimit | None) -> None:
        """Enforce ``limit`` from now on (None: no limit); the buckets start full."""
        with self._lock:
            self._limit = limit
            self._request_bucket = _TokenBucket(limit.requests, limit.window_seconds) if limit else None
            self._output_bucket = (
                _TokenBucket(limit.output_tokens, limit.window_seconds) if limit and limit.output_tokens else None
            )

    def arrival_times(self) -> list[float]:
        """When each request arrived (``time.monotonic``), in order of arrival."""
        return sorted(r.started for r in self.requests)

    def rejected_by_limit(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.fault == "rate_limit"]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear_violations(self) -> None:
        with self._lock:
            self.violations.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self._requests)

    def requests_for(self, difficulty: int) -> list[RecordedRequest]:
        return [r for r in self.requests if r.ask is not None and r.ask.difficulty == difficulty]

    def max_in_flight(self) -> int:
        """The most requests the fake was serving at one instant."""
        events = sorted(
            [(r.started, 1) for r in self.requests] + [(r.finished, -1) for r in self.requests],
            key=lambda e: (e[0], e[1]),
        )
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        return peak

    def problems(self) -> list[str]:
        """Everything that should fail the test: violations, crashes of the fake, unserved faults."""
        found = [f"protocol violation: {v}" for v in self.violations]
        found += [f"fake crashed: {e!r}" for e in self._server.handler_errors]
        with self._lock:
            found += [
                f"scripted fault never served: {f.kind} (difficulty {f.difficulty}), {f.served} of {f.times}"
                for f in self._faults
                if f.times is not None and f.served < f.times
            ]
        return found

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "Anthropic fake: " + "; ".join(problems)

    # -- serving -------------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        started = time.monotonic()
        raw = request.get_data()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw[:200].decode("utf-8", "replace")
        record = RecordedRequest(
            index=0,
            started=started,
            method=request.method,
            path=request.full_path.rstrip("?"),
            headers=self._redacted_headers(request),
            body=body,
        )
        with self._lock:
            record.index = len(self._requests)
            self._requests.append(record)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            try:
                status, payload, headers = self._answer(request, body, record)
            except _Reject as reject:
                with self._lock:
                    self.violations.append(f"request #{record.index} {request.method} {record.path}: {reject.message}")
                status, payload, headers = reject.status, _error_body(reject.error_type, reject.message), reject.headers
            record.status, record.response, record.finished = status, payload, time.monotonic()
        finally:
            with self._lock:
                self._in_flight -= 1
                self._settle(record)
        headers = {"content-type": "application/json", "request-id": f"req_{uuid.uuid4().hex[:24]}", **headers}
        return Response(json.dumps(payload), status=status, headers=headers)

    def _redacted_headers(self, request: Request) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered == "authorization":
                out[lowered] = "Bearer <redacted>" if value == f"Bearer {self.api_key}" else "<redacted, not the key>"
            elif lowered == "x-api-key":
                out[lowered] = "<redacted>"
            else:
                out[lowered] = value
        return out

    def _validate(self, request: Request, body: Any) -> None:
        """Raise ``_Reject`` for anything the real service (or SDK 2.13's contract) would refuse."""
        if request.path != MESSAGES_PATH:
            raise _Reject(404, "not_found_error", f"path {request.path!r} is not {MESSAGES_PATH}")
        if request.method != "POST":
            raise _Reject(405, "invalid_request_error", f"method {request.method} is not POST")
        if request.query_string:
            raise _Reject(400, "invalid_request_error", f"unexpected query string {request.query_string.decode()!r}")
        if "x-api-key" in request.headers:
            raise _Reject(401, "authentication_error", "x-api-key header sent; anthropic 2.13 authenticates with Bearer")
        auth = request.headers.get("authorization")
        if auth is None:
            raise _Reject(401, "authentication_error", "Authorization header is missing")
        if auth != f"Bearer {self.api_key}":
            raise _Reject(401, "authentication_error", "invalid bearer token")
        version = request.headers.get("anthropic-version")
        if version is None:
            raise _Reject(400, "invalid_request_error", "anthropic-version: header is required")
        if version != API_VERSION:
            raise _Reject(400, "invalid_request_error", f"anthropic-version {version!r} is not {API_VERSION}")
        if not (request.headers.get("content-type") or "").startswith("application/json"):
            raise _Reject(400, "invalid_request_error", f"content-type {request.headers.get('content-type')!r}")
        if not isinstance(body, dict):
            raise _Reject(400, "invalid_request_error", "body is not a JSON object")
        for key in FORBIDDEN_BODY_KEYS:
            if key in body:
                raise _Reject(400, "invalid_request_error", f"{key}: not accepted (sampling parameters were removed)")
        extra = sorted(set(body) - ALLOWED_BODY_KEYS)
        if extra:
            raise _Reject(400, "invalid_request_error", f"{', '.join(extra)}: Extra inputs are not permitted")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _Reject(400, "invalid_request_error", "model: Field required")
        if not model.startswith("claude-"):
            raise _Reject(404, "not_found_error", f"model: {model}")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise _Reject(400, "invalid_request_error", "max_tokens: Field required (an integer)")
        if not 1 <= max_tokens <= MODEL_MAX_OUTPUT_TOKENS:
            raise _Reject(400, "invalid_request_error", f"max_tokens: {max_tokens} outside 1..{MODEL_MAX_OUTPUT_TOKENS}")
        self._validate_messages(body.get("messages"))
        if body.get("stream"):
            raise _Reject(400, "invalid_request_error", "stream: the fake (and the pipeline) do not stream")
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            raise _Reject(400, "invalid_request_error", "system: must be a string or a list of text blocks")
        tool_names = self._validate_tools(body.get("tools"))
        choice = body.get("tool_choice")
        if choice is not None:
            if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
                raise _Reject(400, "invalid_request_error", f"tool_choice: {choice!r}")
            if not tool_names and choice.get("type") != "none":
                raise _Reject(400, "invalid_request_error", "tool_choice: given without tools")
            if choice["type"] == "tool" and choice.get("name") not in tool_names:
                raise _Reject(400, "invalid_request_error", f"tool_choice: tool {choice.get('name')!r} is not in tools")
            thinking = body.get("thinking")
            if choice["type"] in ("any", "tool") and isinstance(thinking, dict) and thinking.get("type") != "disabled":
                raise _Reject(400, "invalid_request_error", "thinking may not be used with a forced tool_choice")

    @staticmethod
    def _validate_messages(messages: Any) -> None:
        if not isinstance(messages, list) or not messages:
            raise _Reject(400, "invalid_request_error", "messages: Field required (a non-empty list)")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise _Reject(400, "invalid_request_error", f"messages.{i}.role: must be user or assistant")
            content = message.get("content")
            if isinstance(content, str):
                if not content.strip():
                    raise _Reject(400, "invalid_request_error", f"messages.{i}.content: empty")
            elif isinstance(content, list) and content:
                if not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in content):
                    raise _Reject(400, "invalid_request_error", f"messages.{i}.content: blocks need a type")
            else:
                raise _Reject(400, "invalid_request_error", f"messages.{i}.content: must be a string or blocks")
        if messages[-1]["role"] != "user":
            raise _Reject(400, "invalid_request_error", "messages: the last message must be the user's")

    @staticmethod
    def _validate_tools(tools: Any) -> set[str]:
        if tools is None:
            return set()
        if not isinstance(tools, list) or not tools:
            raise _Reject(400, "invalid_request_error", "tools: must be a non-empty list")
        names: set[str] = set()
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise _Reject(400, "invalid_request_error", f"tools.{i}: must be an object")
            name = tool.get("name")
            if not isinstance(name, str) or not _TOOL_NAME.match(name):
                raise _Reject(400, "invalid_request_error", f"tools.{i}.name: {name!r}")
            if name in names:
                raise _Reject(400, "invalid_request_error", f"tools: tool names must be unique ({name})")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise _Reject(400, "invalid_request_error", f"tools.{i}.input_schema: must be a JSON schema of type object")
            if "description" in tool and not isinstance(tool["description"], str):
                raise _Reject(400, "invalid_request_error", f"tools.{i}.description: must be a string")
            names.add(name)
        return names

    def _answer(self, request: Request, body: Any, record: RecordedRequest) -> tuple[int, dict[str, Any], dict[str, str]]:
        self._validate(request, body)
        record.ask = parse_scenario_prompt("\n".join(self._user_texts(body["messages"])))
        rejection, limit_headers = self._admit(body, record)
        if rejection is not None:
            return 429, rejection, limit_headers
        status, payload, headers = self._answer_admitted(body, record)
        return status, payload, {**limit_headers, **headers}

    def _admit(self, body: dict[str, Any], record: RecordedRequest) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """Take one request and ``max_tokens`` output tokens from the buckets, or say how long to wait.

        A rejected request takes nothing. The headers describe the buckets after the decision.
        """
        with self._lock:
            now, wall = time.monotonic(), time.time()
            requests, output, limit = self._request_bucket, self._output_bucket, self._limit
            if requests is None or limit is None:
                return None, self._unbounded_headers(wall)
            requests.refill(now)
            wait = requests.seconds_until(1)
            which = f"{int(requests.capacity)} requests per {limit.window_seconds:g} s"
            if output is not None:
                output.refill(now)
                output_wait = output.seconds_until(body["max_tokens"])
                if output_wait > wait:
                    wait, which = output_wait, f"{int(output.capacity)} output tokens per {limit.window_seconds:g} s"
            if wait <= 0:
                requests.level -= 1
                if output is not None:
                    output.level -= body["max_tokens"]
                    record.reserved_output = body["max_tokens"]
            headers = requests.headers("requests", now, wall)
            headers.update(
                output.headers("output-tokens", now, wall)
                if output is not None
                else self._unbounded_headers(wall, words=("output-tokens",))
            )
            headers.update(self._unbounded_headers(wall, words=("input-tokens",)))
            if wait <= 0:
                return None, headers
            record.fault = "rate_limit"
            headers["retry-after"] = str(max(1, math.ceil(wait)))
            message = f"This request would exceed your organization's rate limit of {which}. Please retry later."
            return _error_body("rate_limit_error", message), headers

    def _settle(self, record: RecordedRequest) -> None:
        """Correct the output-token reservation to the real count once answered (called under the lock)."""
        if record.reserved_output and self._output_bucket is not None:
            self._output_bucket.refill(time.monotonic())
            used = record.usage["output_tokens"]
            self._output_bucket.level = min(self._output_bucket.capacity, self._output_bucket.level + record.reserved_output - used)
            record.reserved_output = 0

    @staticmethod
    def _unbounded_headers(wall: float, words: tuple[str, ...] = ("requests", "input-tokens", "output-tokens")) -> dict[str, str]:
        headers: dict[str, str] = {}
        for word in words:
            limit = UNBOUNDED_REQUESTS_PER_MINUTE if word == "requests" else UNBOUNDED_TOKENS_PER_MINUTE
            headers[f"anthropic-ratelimit-{word}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{word}-remaining"] = str(limit)
            headers[f"anthropic-ratelimit-{word}-reset"] = _rfc3339(wall)
        return headers

    def _answer_admitted(self, body: dict[str, Any], record: RecordedRequest) -> tuple[int, dict[str, Any], dict[str, str]]:
        prompt = "\n".join(self._user_texts(body["messages"]))
        record.ask = parse_scenario_prompt(prompt)
        fault = self._take_fault(record.ask, self._forced_tool(body))
        record.fault = fault.kind if fault else None
        if fault is not None and fault.kind == "timeout":
            self._stopping.wait(fault.sleep_seconds)
        elif self.latency_seconds:
            self._stopping.wait(self.latency_seconds)

        if fault is not None and fault.kind == "429":
            # A scripted 429 stands for another client of the organisation having used the budget.
            headers = {"retry-after": fault.retry_after, "anthropic-ratelimit-requests-remaining": "0"}
            return 429, _error_body("rate_limit_error", "Number of requests has exceeded your per-minute rate limit"), headers
        if fault is not None and fault.kind == "529":
            return 529, _error_body("overloaded_error", "Overloaded"), {}
        if fault is not None and fault.kind == "500":
            return 500, _error_body("api_error", "Internal server error"), {}
        if fault is not None and fault.kind == "400":
            return 400, _error_body("invalid_request_error", "messages: text content blocks must be non-empty"), {}
        if fault is not None and fault.kind == "401":
            return 401, _error_body("authentication_error", "invalid x-api-key"), {}

        tool_name = self._forced_tool(body)
        if tool_name is None:
            raise _Reject(400, "invalid_request_error", "the pipeline always forces a tool; this request forces none")
        responder = self.responders.get(tool_name)
        if responder is None:
            raise _gap(f"no responder for tool {tool_name!r} (register one in fake.responders)")

        stop_reason = "tool_use"
        content: list[dict[str, Any]]
        kind = fault.kind if fault is not None else None
        if kind in ("truncated", "placeholder") and record.ask is None:
            raise _gap(f"fault {kind} only applies to scenario prompts")
        if kind == "malformed":
            content = [self._tool_block(tool_name, {"items": [{"text": "a reply in the wrong shape", "level": "hard"}]})]
        elif kind == "not_json":
            content = [{"type": "text", "text": "I would suggest covering several situations, for example a review or an outage."}]
            stop_reason = "end_turn"
        elif kind == "text":
            answer = responder(prompt, body)
            listed = answer.get("scenarios", answer)
            fenced = "Here are the scenarios:\n```json\n" + json.dumps(listed, indent=2) + "\n```\nLet me know."
            content = [{"type": "text", "text": fenced}]
            stop_reason = "end_turn"
        elif kind == "truncated":
            assert record.ask is not None
            keep = min(fault.keep, max(record.ask.count - 1, 0))  # type: ignore[union-attr]
            content = [self._tool_block(tool_name, {"scenarios": write_scenarios(record.ask, keep)})]
            stop_reason = "max_tokens"
        elif kind == "placeholder":
            assert record.ask is not None
            keep = min(fault.keep, record.ask.count)  # type: ignore[union-attr]
            good = write_scenarios(record.ask, keep) if keep else []
            filler = [
                {"scenario": f"Generic scenario {i} at difficulty {record.ask.difficulty}",
                 "expected_concepts": ["general knowledge"], "difficulty": record.ask.difficulty}
                for i in range(keep + 1, record.ask.count + 1)
            ]
            content = [self._tool_block(tool_name, {"scenarios": good + filler})]
        else:
            content = [self._tool_block(tool_name, responder(prompt, body))]

        usage = {
            "input_tokens": max(1, (len(json.dumps(body["messages"])) + len(json.dumps(body.get("tools", [])))) // 4),
            "output_tokens": max(1, len(json.dumps(content)) // 4),
        }
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        return 200, message, {}

    def _take_fault(self, ask: ScenarioAsk | None, tool: str | None = None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(ask, tool):
                    fault.served += 1
                    return fault
        return None

    @staticmethod
    def _user_texts(messages: list[dict[str, Any]]) -> Iterator[str]:
        for message in messages:
            if message["role"] != "user":
                continue
            content = message["content"]
            if isinstance(content, str):
                yield content
            else:
                yield from (b.get("text", "") for b in content if b.get("type") == "text")

    @staticmethod
    def _forced_tool(body: dict[str, Any]) -> str | None:
        choice = body.get("tool_choice") or {}
        return choice.get("name") if choice.get("type") == "tool" else None

    @staticmethod
    def _tool_block(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": tool_input}

    @staticmethod
    def _scenario_responder(prompt: str, body: dict[str, Any]) -> dict[str, Any]:
        ask = parse_scenario_prompt(prompt)
        if ask is None:
            raise _gap("record_scenarios forced, but the prompt is not a scenario prompt")
        return {"scenarios": write_scenarios(ask)}

    def _challenge_responder(self, prompt: str, body: dict[str, Any]) -> dict[str, Any]:
        ask = parse_challenge_prompt(prompt)
        if ask is None:
            raise _gap("record_challenge forced, but the prompt is not a challenge-generation prompt")
        challenge = write_challenge(ask)
        with self._written_lock:
            self._written[_normalise(challenge["question"])] = ask.difficulty
        return challenge

    def _difficulty_responder(self, prompt: str, body: dict[str, Any]) -> dict[str, Any]:
        judged = parse_judge_prompt(prompt)
        if judged is None:
            raise _gap("record_difficulty forced, but the prompt is not a difficulty-judge prompt")
        question, options = judged
        with self._written_lock:
            written_for = self._written.get(_normalise(question))
        if written_for is not None:
            return {
                "difficulty": written_for,
                "reasoning": f"The question needs the reasoning expected at level {written_for}, with "
                f"{len(options)} plausible options to weigh.",
            }
        estimate = max(1, min(10, 1 + len(question.split()) // 10))
        return {"difficulty": estimate, "reasoning": f"Judged from the question alone ({len(question.split())} words)."}


@pytest.fixture
def anthropic_fake() -> Iterator[AnthropicFake]:
    """A running fake; the test fails at teardown if it saw a violation or a fault went unserved."""
    fake = AnthropicFake().start()
    try:
        yield fake
    finally:
        fake.stop()
    fake.assert_clean()
