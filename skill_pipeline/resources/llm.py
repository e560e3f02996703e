"""ScenarioLLM: the model that writes scenarios (and, for experiments, challenges).

Production calls Claude through the ``anthropic`` SDK; the embedded default is ``OfflineLLM``, a
deterministic writer labelled ``generator: offline`` that needs no network. Both go through the
same prompt, parser and validation (``core.generation``), and the same concurrency and retry
policy (``ScenarioLLM.generate``): a difficulty whose reply is invalid or short is asked again for
what is missing, then the run fails. Nothing is padded.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from typing import Any, Mapping

from dagster import ConfigurableResource, EnvVar
from pydantic import BaseModel, Field, PrivateAttr

from skill_pipeline.challenge_prompt import (
    CHALLENGE_TOOL_NAME,
    CHALLENGE_TOOL_SCHEMA,
    DIFFICULTY_JUDGE_SCHEMA,
    DIFFICULTY_JUDGE_TOOL_NAME,
    ChallengeRequest,
    DifficultyJudgeRequest,
    render_judge_prompt,
)
from skill_pipeline.core.generation import (
    SCENARIO_PROMPT_VERSION,
    SCENARIO_TOOL_SCHEMA,
    build_scenario_prompt,
    ScenarioParseError,
    SyntheticScenario,
    parse_scenarios_partial,
    synthetic_item_key,
)
from skill_pipeline.resources.offline_challenges import (
    OFFLINE_CHALLENGE_MODEL,
    OFFLINE_JUDGE_MODEL,
    offline_judge_difficulty,
    offline_write_challenge,
)
from skill_pipeline.models import (
    DIFFICULTY_LEVELS,
    SCENARIOS_PER_DIFFICULTY,
    LLMReply,
    Scenario,
    ScenarioRequest,
    Skill,
    TokenUsage,
)


class ScenarioGenerationError(RuntimeError):
    """An LLM call for a skill failed for good: names the service, the skill and the difficulty."""


class SkillGeneration(BaseModel):
    skill_id: str
    rows: list[SyntheticScenario]
    usage: TokenUsage
    calls: int
    generator: str
    model: str


# USD per million tokens (input, output), for the cost estimate in metadata.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-opus-4-5": (5.0, 25.0),
}


def estimate_cost_usd(model: str, usage: TokenUsage) -> float:
    for prefix, (inp, out) in PRICES_PER_MTOK.items():
        if model.startswith(prefix):
            return round((usage.input_tokens * inp + usage.output_tokens * out) / 1_000_000, 6)
    return 0.0


class ScenarioLLM(ConfigurableResource):
    """Interface: ``write_scenarios`` is one call; ``generate`` is the policy around the calls."""

    max_concurrency: int = Field(
        default=8, ge=1, description="LLM calls in flight at once in this process (size it from the output-token rate limit)"
    )
    max_attempts: int = Field(default=3, ge=1, description="calls per difficulty before the run fails")

    @property
    def generator(self) -> str:
        raise NotImplementedError

    @property
    def model_name(self) -> str:
        raise NotImplementedError

    @property
    def service(self) -> str:
        return self.generator

    def write_scenarios(self, request: ScenarioRequest) -> LLMReply:
        raise NotImplementedError

    def write_challenge(self, request: ChallengeRequest) -> LLMReply:
        """One challenge for one dataset item, from a rendered challenge-generation prompt (experiments)."""
        raise NotImplementedError

    def judge_difficulty(self, request: DifficultyJudgeRequest) -> LLMReply:
        """The LLM judge's 1–10 difficulty estimate of a generated challenge (experiments)."""
        raise NotImplementedError

    def generate(
        self, skills: list[Skill], keep: Mapping[str, list[SyntheticScenario]] | None = None
    ) -> dict[str, SkillGeneration]:
        """Scenarios for every difficulty of every skill, all calls under one concurrency bound.

        Ten difficulties of a skill (and the difficulties of several skills) are in flight at once,
        so a skill costs about one LLM latency, not ten. ``keep`` holds scenarios a skill already
        has (adopted from its dataset): only the missing slots are asked for. The first failure
        cancels what has not started and fails the whole call: a skill is stored complete or not
        at all.
        """
        keep = keep or {}
        kept: dict[tuple[str, int], list[SyntheticScenario]] = {}
        for skill in skills:
            for row in keep.get(skill.id, []):
                kept.setdefault((skill.id, row.difficulty), []).append(row)
        tasks = [
            (skill, d)
            for skill in skills
            for d in DIFFICULTY_LEVELS
            if len(kept.get((skill.id, d), [])) < SCENARIOS_PER_DIFFICULTY
        ]
        results: dict[tuple[str, int], tuple[list[Scenario], TokenUsage, int, str]] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(tasks)))) as pool:
            futures = {
                pool.submit(self._one_difficulty, skill, d, kept.get((skill.id, d), [])): (skill.id, d)
                for skill, d in tasks
            }
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in done:
                if future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
                results[futures[future]] = future.result()
        created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        out: dict[str, SkillGeneration] = {}
        for skill in skills:
            rows: list[SyntheticScenario] = []
            usage, calls, model = TokenUsage(), 0, self.model_name
            for difficulty in DIFFICULTY_LEVELS:
                existing = sorted(kept.get((skill.id, difficulty), []), key=lambda r: r.slot)
                rows += existing[:SCENARIOS_PER_DIFFICULTY]
                if (skill.id, difficulty) not in results:
                    continue
                scenarios, u, n, model = results[(skill.id, difficulty)]
                usage, calls = usage + u, calls + n
                free = [s for s in range(1, SCENARIOS_PER_DIFFICULTY + 1) if s not in {r.slot for r in existing}]
                for slot, scenario in zip(free, scenarios[len(existing):]):
                    rows.append(
                        SyntheticScenario(
                            item_key=synthetic_item_key(difficulty, slot),
                            slot=slot,
                            difficulty=difficulty,
                            scenario=scenario.scenario,
                            expected_concepts=scenario.expected_concepts,
                            generator=self.generator,
                            model=model,
                            prompt_version=SCENARIO_PROMPT_VERSION,
                            skill_fingerprint=skill.fingerprint,
                            created_at=created_at,
                        )
                    )
            rows.sort(key=lambda r: (r.difficulty, r.slot))
            out[skill.id] = SkillGeneration(
                skill_id=skill.id, rows=rows, usage=usage, calls=calls, generator=self.generator, model=model
            )
        return out

    def _one_difficulty(
        self, skill: Skill, difficulty: int, existing: list[SyntheticScenario]
    ) -> tuple[list[Scenario], TokenUsage, int, str]:
        accepted: list[Scenario] = [
            Scenario(scenario=r.scenario, expected_concepts=r.expected_concepts, difficulty=r.difficulty)
            for r in existing
        ]
        usage, model = TokenUsage(), self.model_name
        problems: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            request = ScenarioRequest(
                skill=skill,
                difficulty=difficulty,
                count=SCENARIOS_PER_DIFFICULTY - len(accepted),
                avoid=[s.scenario for s in accepted],
                attempt=attempt,
            )
            try:
                reply = self.write_scenarios(request)
            except Exception as exc:  # the SDK has already retried what is worth retrying
                raise ScenarioGenerationError(
                    f"{self.service}: call for skill {skill.id} difficulty {difficulty} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            usage, model = usage + reply.usage, reply.model
            try:
                scenarios, problems = parse_scenarios_partial(reply.text, difficulty)
            except ScenarioParseError as exc:
                scenarios, problems = [], [str(exc)]
            seen = {s.scenario.casefold() for s in accepted}
            for scenario in scenarios:
                if scenario.scenario.casefold() not in seen and len(accepted) < SCENARIOS_PER_DIFFICULTY:
                    accepted.append(scenario)
                    seen.add(scenario.scenario.casefold())
            if len(accepted) == SCENARIOS_PER_DIFFICULTY:
                return accepted, usage, attempt, model
        raise ScenarioGenerationError(
            f"{self.service}: skill {skill.id} difficulty {difficulty}: {len(accepted)} valid scenarios of "
            f"{SCENARIOS_PER_DIFFICULTY} after {self.max_attempts} attempts ({'; '.join(problems)[:500]})"
        )


# ---------------------------------------------------------------------------------------------
# Offline writer
# ---------------------------------------------------------------------------------------------

_SITUATIONS: dict[int, list[str]] = {
    # Each difficulty band has its own kinds of situation, so levels read differently.
    1: ["a newcomer's first week", "a flash-card review", "a glossary quiz before a team meeting",
        "a short onboarding checklist", "a beginner workshop warm-up", "a help-desk FAQ"],
    2: ["a study-group recap", "a tutorial exercise", "a quick reference lookup during a task",
        "a peer explaining basics to a colleague", "a one-page cheat sheet review", "a lab's first session"],
    3: ["a small team project at work", "a code or document review with a mentor", "a weekly status meeting",
        "a customer question at the support desk", "a side project over the weekend", "a short internal training"],
    4: ["a handover from a colleague going on leave", "a first solo assignment", "a request from a product manager",
        "a mid-size refactoring", "a comparison of two approaches for a proposal", "a post-incident follow-up task"],
    5: ["a production issue reported by users", "a migration between two tools", "a deadline-driven feature",
        "a vendor evaluation", "an audit finding to fix", "a cross-team integration"],
    6: ["a system that must scale tenfold", "conflicting requirements from two teams", "a costly recurring failure",
        "a partially documented legacy setup", "a security review before launch", "an analysis for leadership"],
    7: ["an outage under time pressure", "an edge case that breaks the usual rule", "a regulated environment",
        "a contract with strict service levels", "data that contradicts the expected result", "a design review with experts"],
    8: ["a failure that only appears under load", "an interaction of two subtle rules", "a trade-off with no free option",
        "an exception a standard reference gets wrong", "a post-mortem with several causes", "a high-stakes client escalation"],
    9: ["an architecture decision for several years", "a disagreement between two senior experts",
        "a novel situation with no precedent in the team", "a cascade of failures across systems",
        "a negotiation where the technical facts decide", "a research-grade question"],
    10: ["a standard-setting decision for a whole organisation", "an ambiguous case where several answers are defensible",
         "a crisis combining technical, legal and human factors", "a review of an expert's flawed reasoning",
         "a problem at the frontier of current practice", "a teaching moment for other experts"],
}

_TASKS: dict[int, list[str]] = {
    1: ["recognise", "name", "identify", "recall", "spot"],
    2: ["define", "match", "describe", "list the parts of", "tell apart"],
    3: ["explain how to use", "apply", "choose between options for", "relate", "illustrate"],
    4: ["use", "connect", "compare approaches to", "organise work around", "check the result of"],
    5: ["apply", "combine", "analyse", "adapt", "troubleshoot"],
    6: ["analyse the effects of", "plan with", "integrate", "diagnose a problem with", "prioritise using"],
    7: ["handle an edge case of", "debug", "decide under constraints about", "find the exception in", "reconcile"],
    8: ["resolve a subtle conflict in", "optimise", "critique a plan that uses", "reason about failure modes of", "justify"],
    9: ["design a long-term approach to", "arbitrate between experts on", "weigh several valid approaches to",
        "anticipate second-order effects of", "set policy for"],
    10: ["evaluate competing expert strategies for", "define standards for", "reason from first principles about",
         "expose the flaw in an expert argument about", "balance every constraint of"],
}

_STOP = {"and", "or", "the", "a", "an", "of", "to", "in", "for", "with", "on", "at", "by", "from", "how", "what",
         "using", "use", "their", "its", "your", "into", "about", "basic", "including", "such", "as", "e.g"}


def concepts_from_skill(skill: Skill) -> list[str]:
    """Concept phrases taken from the skill's description (comma/semicolon lists), else its name."""
    text = skill.description or skill.name
    parts = re.split(r"[,;:()/]|\band\b|\bor\b|\.\s", text)
    concepts: list[str] = []
    for part in parts:
        words = [w for w in re.findall(r"[A-Za-z0-9+#'-]+", part) if w.lower() not in _STOP]
        phrase = " ".join(words[:4]).strip()
        if len(phrase) >= 3 and phrase.lower() not in (c.lower() for c in concepts):
            concepts.append(phrase)
    if len(concepts) < 3:
        concepts += [w for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", skill.name + " " + text) if w.lower() not in _STOP]
    unique: list[str] = []
    for c in concepts:
        if c.lower() not in (u.lower() for u in unique):
            unique.append(c)
    return unique[:12] or [skill.name]


class OfflineLLM(ScenarioLLM):
    """Deterministic, skill-specific scenarios without a network: the embedded default.

    Output is varied (a different situation, task and concept pair per scenario and difficulty) but
    labelled ``generator: offline`` everywhere it lands, and the pipeline refuses to write it to a
    real Opik.
    """

    model: str = Field(default="offline-writer-v1", description="label recorded as the model")

    @property
    def generator(self) -> str:
        return "offline"

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def service(self) -> str:
        return "offline writer"

    def write_scenarios(self, request: ScenarioRequest) -> LLMReply:
        skill, d = request.skill, request.difficulty
        concepts = concepts_from_skill(skill)
        seed = int(hashlib.sha256(f"{skill.id}|{skill.fingerprint}|{d}".encode()).hexdigest(), 16)
        situations, tasks = _SITUATIONS[d], _TASKS[d]
        avoid = {a.casefold() for a in request.avoid}
        scenarios: list[dict] = []
        i = 0
        while len(scenarios) < request.count and i < 50:
            situation = situations[(seed + i) % len(situations)]
            task = tasks[(seed // 7 + 2 * i) % len(tasks)]
            first = concepts[(seed // 13 + i) % len(concepts)]
            second = concepts[(seed // 17 + 3 * i + 1) % len(concepts)]
            picked = [first] if first == second else [first, second]
            if d >= 6 and len(concepts) > 2:
                third = concepts[(seed // 19 + 5 * i + 2) % len(concepts)]
                if third not in picked:
                    picked.append(third)
            text = (
                f"In {situation}, a learner of {skill.name} must {task} {picked[0]}"
                + (f" in the light of {', '.join(picked[1:])}" if len(picked) > 1 else "")
                + f" (difficulty {d}/10)."
            )
            i += 1
            if text.casefold() in avoid or any(s["scenario"] == text for s in scenarios):
                continue
            scenarios.append({"scenario": text, "expected_concepts": picked, "difficulty": d})
        text = json.dumps(scenarios, indent=2)
        usage = TokenUsage(input_tokens=0, output_tokens=0)
        return LLMReply(text=text, usage=usage, model=self.model, generator="offline")

    def write_challenge(self, request: ChallengeRequest) -> LLMReply:
        return LLMReply(
            text=offline_write_challenge(request), model=OFFLINE_CHALLENGE_MODEL, generator="offline"
        )

    def judge_difficulty(self, request: DifficultyJudgeRequest) -> LLMReply:
        return LLMReply(text=offline_judge_difficulty(request), model=OFFLINE_JUDGE_MODEL, generator="offline")


# ---------------------------------------------------------------------------------------------
# Anthropic writer
# ---------------------------------------------------------------------------------------------
# Imports of this section live here so that the offline path above never pays for them; the SDK
# itself is imported only when the first client is built.



_anthropic_log = logging.getLogger(__name__ + ".anthropic")

# Statuses the SDK retries by itself (anthropic 2.13 ``_should_retry``): an error with one of these
# reached us only after ``max_retries`` more attempts.
_SDK_RETRIED_STATUSES = frozenset({408, 409, 429})

_TOOL_DESCRIPTIONS: dict[str, str] = {
    "record_scenarios": (
        "Record the scenarios written for this skill and difficulty: one entry per scenario, each a "
        "concrete situation with the concepts it tests and the difficulty asked for."
    ),
}


class AnthropicCallError(RuntimeError):
    """A Messages API call that failed after the SDK's own retries.

    Raised instead of the SDK's exception (and without chaining it) because the SDK's exception
    carries the HTTP request, whose headers hold the API key; Dagster serialises chained causes
    into the event log. The message keeps what is needed to act: status, error type, request id.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.request_id = request_id


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "<redacted>") if secret else text


def _describe_sdk_error(exc: Exception, *, max_retries: int, secret: str) -> AnthropicCallError:
    """An ``AnthropicCallError`` saying what the service answered, with the key scrubbed."""
    status: int | None = getattr(exc, "status_code", None)
    error_type: str | None = getattr(exc, "type", None) if status is not None else None
    request_id: str | None = getattr(exc, "request_id", None)
    detail = getattr(exc, "api_message", None) or getattr(exc, "message", None) or str(exc)
    retried = status is None or status in _SDK_RETRIED_STATUSES or status >= 500
    what = f"HTTP {status} {error_type or 'error'}" if status is not None else type(exc).__name__
    tries = f"after {max_retries} retries" if retried else "(not retryable)"
    rid = f" [request-id {request_id}]" if request_id else ""
    message = f"Anthropic Messages API: {what} {tries}{rid}: {detail}"
    return AnthropicCallError(
        _redact(message, secret)[:1000], status_code=status, error_type=error_type, request_id=request_id
    )


def _retry_after_seconds(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else float(email.utils.mktime_tz(parsed) - time.time())


def _retry_after_cap_hook(cap_seconds: float):
    """An httpx2 response hook that shortens a ``retry-after`` longer than ``cap_seconds``.

    The SDK sleeps for whatever ``retry-after`` says, without a bound; a rate limiter answering
    "come back in an hour" would park a worker thread (and the run) for that hour. Capped, the
    retries still back off, and if the limit persists the call fails within a known time.
    """

    def hook(response: Any) -> None:
        headers = response.headers
        millis = headers.get("retry-after-ms")
        if millis is not None:
            try:
                if float(millis) / 1000 > cap_seconds:
                    headers["retry-after-ms"] = str(int(cap_seconds * 1000))
            except ValueError:
                pass
        seconds = headers.get("retry-after")
        if seconds is not None:
            wait_for = _retry_after_seconds(seconds)
            if wait_for is not None and wait_for > cap_seconds:
                headers["retry-after"] = f"{cap_seconds:g}"

    return hook


class AnthropicLLM(ScenarioLLM):
    """Claude through the ``anthropic`` SDK, answering with forced tool use.

    Forced tool use (``tool_choice`` naming the one tool) makes the model answer with JSON that
    matches the tool's schema, so the parser rarely has to dig JSON out of prose; it still can,
    for a reply without a tool call. Transient failures (429 with ``retry-after``, 529, 5xx,
    timeouts) are retried by the SDK with its backoff; what is still failing after
    ``max_retries`` propagates and ``generate`` fails the run naming the service and the skill.
    """

    api_key: str = Field(
        repr=False, description="Anthropic API key; give it as EnvVar('ANTHROPIC_API_KEY'), never as a literal"
    )
    model: str = Field(default="claude-haiku-4-5-20251001", description="model id sent with every call")
    base_url: str | None = Field(
        default=None, description="API root; None means the SDK default (or ANTHROPIC_BASE_URL). Tests point it at a fake."
    )
    max_tokens: int = Field(default=2000, ge=1, description="output-token ceiling of one call")
    timeout_seconds: float = Field(default=60, gt=0, description="per-attempt timeout (the SDK default is 600 s)")
    max_retries: int = Field(default=4, ge=0, description="SDK retries of 408/409/429/5xx/timeouts (the SDK default is 2)")
    max_retry_wait_seconds: float = Field(
        default=60, gt=0, description="longest wait honoured from a retry-after header (the SDK honours any)"
    )

    _client: Any = PrivateAttr(default=None)
    _client_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def generator(self) -> str:
        return "anthropic"

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def service(self) -> str:
        return "Anthropic"

    def _secret(self) -> str:
        """The key as a plain string; an unresolved ``EnvVar`` (resource used outside a run) is read here."""
        key = self.api_key
        if isinstance(key, EnvVar):
            key = key.get_value() or ""
        return str.__str__(key) if isinstance(key, str) else ""

    def _get_client(self) -> Any:
        """One SDK client per resource instance, built on first use.

        The client (and its connection pool) is shared by the worker threads of ``generate``; the
        lock makes sure two threads arriving together do not build two.
        """
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                secret = self._secret()
                if not secret:
                    raise AnthropicCallError("Anthropic: api_key is empty (set ANTHROPIC_API_KEY)")
                import anthropic

                http_client = anthropic.DefaultHttpxClient(
                    event_hooks={"response": [_retry_after_cap_hook(self.max_retry_wait_seconds)]}
                )
                self._client = anthropic.Anthropic(
                    api_key=secret,
                    base_url=self.base_url,
                    max_retries=self.max_retries,
                    timeout=self.timeout_seconds,
                    http_client=http_client,
                )
            return self._client

    def teardown_after_execution(self, context: Any) -> None:
        """Close the connection pool when Dagster is done with this run's copy of the resource."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(
        self,
        prompt: str,
        tool_name: str,
        schema: dict[str, Any],
        max_tokens: int | None = None,
        description: str | None = None,
    ) -> LLMReply:
        """One Messages call that forces the model to answer through ``tool_name``.

        The reply text is the tool input as JSON; a reply without a tool call falls back to its
        text blocks (the parsers accept prose and code fences). No sampling parameters are sent:
        anthropic 2.13 has dropped them, variety comes from the prompt.
        """
        import anthropic

        client = self._get_client()
        tool = {
            "name": tool_name,
            "description": description or _TOOL_DESCRIPTIONS.get(tool_name, f"Record the answer as {tool_name}."),
            "input_schema": schema,
        }
        failure: AnthropicCallError | None = None
        try:
            message = client.messages.create(
                model=self.model,
                max_tokens=max_tokens or self.max_tokens,
                messages=[{"role": "user", "content": prompt}],
                tools=[tool],
                tool_choice={"type": "tool", "name": tool_name},
            )
        except anthropic.APIError as exc:
            failure = _describe_sdk_error(exc, max_retries=self.max_retries, secret=self._secret())
        if failure is not None:
            # Raised outside the ``except`` block so the SDK exception is not even the implicit context.
            raise failure

        tool_inputs = [
            block.input
            for block in message.content
            if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == tool_name
        ]
        if tool_inputs:
            text = json.dumps(tool_inputs[0], ensure_ascii=False)
        else:
            text = "\n".join(getattr(block, "text", "") for block in message.content if getattr(block, "type", None) == "text")
            _anthropic_log.warning(
                "Anthropic reply without a %s tool call (stop_reason %s); parsing its text instead",
                tool_name,
                message.stop_reason,
            )
        if message.stop_reason == "max_tokens":
            _anthropic_log.warning(
                "Anthropic reply cut at max_tokens=%d; what is complete is kept and the rest asked again",
                max_tokens or self.max_tokens,
            )
        usage = TokenUsage(
            input_tokens=int(message.usage.input_tokens or 0), output_tokens=int(message.usage.output_tokens or 0)
        )
        _anthropic_log.debug(
            "Anthropic %s: %s, stop_reason %s, %d in / %d out tokens",
            tool_name,
            message.model,
            message.stop_reason,
            usage.input_tokens,
            usage.output_tokens,
        )
        return LLMReply(text=text, usage=usage, model=message.model or self.model, generator="anthropic")

    def write_scenarios(self, request: ScenarioRequest) -> LLMReply:
        return self._call(build_scenario_prompt(request), "record_scenarios", SCENARIO_TOOL_SCHEMA)

    def write_challenge(self, request: ChallengeRequest) -> LLMReply:
        return self._call(request.prompt, CHALLENGE_TOOL_NAME, CHALLENGE_TOOL_SCHEMA)

    def judge_difficulty(self, request: DifficultyJudgeRequest) -> LLMReply:
        return self._call(render_judge_prompt(request), DIFFICULTY_JUDGE_TOOL_NAME, DIFFICULTY_JUDGE_SCHEMA)
