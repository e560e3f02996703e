"""The offline writer's scenarios: varied, deterministic, and no two of a skill near duplicates.

Why this shape: the pipeline drops a new scenario whose token-set ratio (``core.near_duplicates``)
against another scenario of the skill is 90 or more, and asks again. A template writer with one
sentence frame ("In <situation>, a learner of <skill> must <task> <concept> ...") shares most of
its words between any two outputs, so some pairs score over 90 and a run with
``max_attempts=1`` fails at random skills. So:

- each candidate is built from a sentence frame (``_FRAMES``), a situation and a task of its
  difficulty band and one to three of the skill's concepts, each picked by a SHA-256 seed of
  skill, fingerprint and difficulty plus the candidate's index: the same skill gives the same
  text every time;
- ``skill_plan`` chooses, difficulty 1 to 10 in order, the first candidates that are not near
  duplicates (rapidfuzz token-set ratio under ``DEFAULT_THRESHOLD``) of any scenario already
  chosen for the skill, so a skill's 50 first-attempt scenarios have no near-duplicate pair at
  ANY difficulty — even though the ten difficulties are written concurrently, without seeing one
  another;
- asked again (``avoid`` lists what was accepted or dropped), ``offline_scenarios`` returns the
  plan's scenarios not avoided, then spare candidates that are not near duplicates of the plan
  or of anything avoided.

Everything stays labelled offline by the resource that wraps it.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from rapidfuzz import fuzz, process, utils

from skill_pipeline.core.near_duplicates import DEFAULT_THRESHOLD
from skill_pipeline.models import DIFFICULTY_LEVELS, SCENARIOS_PER_DIFFICULTY, Skill


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



# Sentence frames: few shared words between frames, so two scenarios differ in more than slots.
_FRAMES: tuple[str, ...] = (
    "In {situation}, a learner of {skill} must {task} {focus}{extra} (difficulty {d}/10).",
    "Setting: {situation}. Someone practising {skill} is asked to {task} {focus}{extra}; level {d} of 10.",
    "During {situation} the job is to {task} {focus}{extra} — a {skill} problem rated {d}/10.",
    "Picture {situation}: what would it take to {task} {focus}{extra}? ({skill}, difficulty {d}/10)",
    "{skill} at level {d}/10, {situation}: {task} {focus}{extra}.",
)
_EXTRAS: tuple[str, ...] = (" in the light of {rest}", ", keeping {rest} in view", " together with {rest}")
CANDIDATES_PER_DIFFICULTY = 60


def _seed(skill: Skill, difficulty: int) -> int:
    return int(hashlib.sha256(f"{skill.id}|{skill.fingerprint}|{difficulty}".encode()).hexdigest(), 16)


def _candidate(skill: Skill, d: int, i: int, seed: int, concepts: list[str]) -> dict:
    """Candidate ``i`` of difficulty ``d``: frame, situation, task and concepts picked by seed and index."""
    situations, tasks = _SITUATIONS[d], _TASKS[d]
    frame = _FRAMES[(seed // 3 + i) % len(_FRAMES)]
    situation = situations[(seed + i) % len(situations)]
    task = tasks[(seed // 7 + 2 * i + i // len(situations)) % len(tasks)]
    first = concepts[(seed // 13 + i) % len(concepts)]
    second = concepts[(seed // 17 + 3 * i + 1) % len(concepts)]
    picked = [first] if first == second else [first, second]
    if d >= 6 and len(concepts) > 2:
        third = concepts[(seed // 19 + 5 * i + 2) % len(concepts)]
        if third not in picked:
            picked.append(third)
    extra = _EXTRAS[(seed // 23 + i) % len(_EXTRAS)].format(rest=", ".join(picked[1:])) if len(picked) > 1 else ""
    text = frame.format(situation=situation, skill=skill.name, task=task, focus=picked[0], extra=extra, d=d)
    return {"scenario": text[0].upper() + text[1:], "expected_concepts": picked, "difficulty": d}


def _candidates(skill: Skill, d: int) -> list[dict]:
    concepts, seed = concepts_from_skill(skill), _seed(skill, d)
    out: list[dict] = []
    seen: set[str] = set()
    for i in range(CANDIDATES_PER_DIFFICULTY):
        row = _candidate(skill, d, i, seed, concepts)
        if row["scenario"].casefold() not in seen:
            seen.add(row["scenario"].casefold())
            out.append(row)
    return out


def _is_near_duplicate(text: str, others: list[str]) -> bool:
    if not others:
        return False
    match = process.extractOne(
        text, others, scorer=fuzz.token_set_ratio, processor=utils.default_process, score_cutoff=DEFAULT_THRESHOLD
    )
    return match is not None


@lru_cache(maxsize=256)
def _plan(skill: Skill) -> dict[int, tuple[dict, ...]]:
    chosen: dict[int, list[dict]] = {}
    texts: list[str] = []
    for d in DIFFICULTY_LEVELS:
        rows: list[dict] = []
        candidates = _candidates(skill, d)
        for row in candidates:
            if len(rows) < SCENARIOS_PER_DIFFICULTY and not _is_near_duplicate(row["scenario"], texts):
                rows.append(row)
                texts.append(row["scenario"])
        for row in candidates:  # a skill too thin for distinct texts: fill up (the pipeline asks again)
            if len(rows) < SCENARIOS_PER_DIFFICULTY and row not in rows:
                rows.append(row)
                texts.append(row["scenario"])
        chosen[d] = rows
    return {d: tuple(rows) for d, rows in chosen.items()}


def skill_plan(skill: Skill) -> dict[int, list[dict]]:
    """The skill's first-attempt scenarios per difficulty (copies: callers may change them)."""
    return {d: [dict(r) for r in rows] for d, rows in _plan(skill).items()}


def offline_scenarios(skill: Skill, difficulty: int, count: int, avoid: list[str]) -> list[dict]:
    """``count`` scenarios for ``difficulty``: the plan's not in ``avoid``, then spares (module docstring)."""
    plan = _plan(skill)
    avoided = {a.casefold() for a in avoid}
    out = [dict(r) for r in plan[difficulty] if r["scenario"].casefold() not in avoided][:count]
    if len(out) < count:
        others = [r["scenario"] for rows in plan.values() for r in rows] + list(avoid)
        for row in _candidates(skill, difficulty):
            if len(out) >= count:
                break
            text = row["scenario"]
            if text.casefold() in avoided or any(o["scenario"] == text for o in out):
                continue
            if not _is_near_duplicate(text, others + [o["scenario"] for o in out]):
                out.append(row)
    return out
