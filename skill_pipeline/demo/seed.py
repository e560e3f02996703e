"""Seeds the local app database (and the local judge scores) with a realistic learning app.

Seven skills (one of them deactivated), 50 challenges per active skill (5 per difficulty) and
about 19,000 answers, simulated as a psychometrician would: each skill has 160 users with an
ability (N(0, 1) logits) and each challenge a true difficulty (0.5 logits per level around level
5.5, plus noise). A user answers ~20 challenges, chosen mostly near their level (an adaptive app)
but wide enough to link the scale, and answers correctly with the Rasch probability
``σ(ability − difficulty + 0.9)`` (about 70 % correct at one's own level). So the item statistics
and the calibration have real signal: discrimination from the users' rest scores, difficulty from
who got what right.

The spread is deliberate so that promotion has real work to do: about one challenge in eight is
MISLABELLED (its true level 3–5 levels from its written label: the written label is a guess), a
few have a WRONG KEY (most users "wrong", negative discrimination), some are answered too slowly,
some rarely (new challenges with a handful of answers), some have no judge score, answers include
rapid guesses (under a second, at chance) and idle ones (10 minutes to an hour), one challenge per
skill is a reworded copy of another (promotion keeps only one: near duplicates), and a few rows are
malformed (three options, an out-of-range correct option, answers with impossible confidence or a
missing response time). Everything is derived from a fixed seed: the same demo every time.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache

DEMO_NAMESPACE = uuid.UUID("6f1c3c64-5a1e-4c55-9b0e-0d3f7f5b9a10")

DEMO_SKILLS: list[tuple[str, str, bool]] = [
    ("SQL Querying",
     "Writing SQL queries: joins, aggregation with GROUP BY, subqueries, window functions, indexes and query plans",
     True),
    ("Python Fundamentals",
     "Core Python: data types, control flow, functions, comprehensions, exceptions, modules and virtual environments",
     True),
    ("Git Version Control",
     "Using Git: commits, branches, merging, rebasing, resolving conflicts, remotes and pull requests",
     True),
    ("Statistics for Data Analysis",
     "Descriptive statistics, probability distributions, hypothesis testing, confidence intervals and regression",
     True),
    ("Kubernetes Operations",
     "Running workloads on Kubernetes: pods, deployments, services, config maps, resource limits and rollouts",
     True),
    ("Spanish Grammar",
     "Spanish grammar for learners: verb conjugation, ser versus estar, subjunctive mood, articles and pronouns",
     True),
    ("Flash Development",
     "Building interactive animations in Adobe Flash with ActionScript timelines and tweens",
     False),
]

_STEMS = [
    "Which statement about {concept} is correct in {skill}?",
    "A colleague asks how {concept} works. What is the best explanation?",
    "What is the most likely outcome when {concept} is applied in this situation?",
    "Which option best describes the role of {concept}?",
    "What should you check first when {concept} does not behave as expected?",
    "When is {concept} the wrong tool to reach for in {skill}?",
    "Which misconception about {concept} causes the most mistakes?",
    "How would you verify that {concept} was used correctly?",
    "What trade-off does {concept} bring compared with the alternatives?",
    "Which example shows {concept} applied correctly in {skill}?",
]


# Where each question is set, one per difficulty and stem: an app's questions at different levels
# are different questions, not one stem repeated (the pipeline would rightly keep only one of
# those: near duplicates, core.promotion_duplicates).
_SETTINGS = [
    "on a first day", "in a glossary quiz", "during onboarding", "in a study group", "in a flash-card drill",
    "in a tutorial", "for a cheat sheet", "in a lab session", "at a help desk", "in a peer review",
    "in a small project", "in a weekly sync", "for a mentor", "for a side project", "during training",
    "at a handover", "on a first solo task", "for a product manager", "in a refactoring", "for a proposal",
    "in a production issue", "during a migration", "before a deadline", "for a vendor review", "after an audit",
    "when scaling tenfold", "between two teams", "for a recurring failure", "in a legacy setup", "before launch",
    "during an outage", "in an edge case", "under regulation", "under strict service levels", "with odd data",
    "under load", "with two subtle rules", "in a hard trade-off", "where references disagree", "in a post-mortem",
    "for a long-term design", "between two experts", "with no precedent", "in a failure cascade", "in a negotiation",
    "for an organisation standard", "in an ambiguous case", "in a crisis", "in a flawed expert argument",
    "at the frontier of practice",
]
# One challenge per skill is a reworded copy of another (as apps have them): promotion rejects it.
REWORDED = (10, 4, 9, 4)  # (difficulty, stem) copies (difficulty, stem), reworded


def demo_skill_id(name: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, f"skill:{name}"))


@dataclass
class DemoData:
    skills: list[tuple] = field(default_factory=list)
    challenges: list[tuple] = field(default_factory=list)
    answers: list[tuple] = field(default_factory=list)
    judge_scores: dict[str, float] = field(default_factory=dict)
    true_levels: dict[str, int] = field(default_factory=dict)  # the simulation's truth, for tests only


def _concepts(description: str) -> list[str]:
    after_colon = description.split(":", 1)[-1]
    parts = [p.strip() for chunk in after_colon.split(",") for p in chunk.split(" and ")]
    return [p for p in parts if p] or [description]


USERS_PER_SKILL = 160
ANSWERS_PER_USER = (20, 32)
LOGITS_PER_LEVEL = 0.5
EASE = 1.1  # logits: a user at their own level is right ~75 % of the time
SERVING_SPREAD = 3.5  # levels: how far from their level the app serves a user
USER_POOL = 600
ABILITY_SD = 1.2  # logits


def _challenge_rows(rng: random.Random, data: DemoData, name: str, skill_id: str, description: str,
                    created: datetime) -> list[dict]:
    """The skill's 50 challenges, with their simulated truth (true level, key, speed, exposure)."""
    concepts = _concepts(description)
    items: list[dict] = []
    for difficulty in range(1, 11):
        for n in range(5):
            cid = str(uuid.uuid5(DEMO_NAMESPACE, f"challenge:{name}:{difficulty}:{n}"))
            # No (stem, concept) pair twice in a skill (5+ concepts): 50 different questions.
            index = (difficulty - 1) * 5 + n
            stem, concept = _STEMS[index % len(_STEMS)], concepts[(index // len(_STEMS) + index) % len(concepts)]
            shift = (difficulty + 2 * n) % len(concepts)  # which other concepts the distractors name
            other = [c for c in concepts[shift:] + concepts[:shift] if c != concept]
            setting = _SETTINGS[(difficulty - 1) * 5 + n]
            question = stem.format(concept=concept, skill=name).rstrip("?.") + f" ({setting})?"
            options = [
                f"It applies {concept} as the {name} reference documents it {setting}",
                f"It replaces {concept} with {other[0] if other else 'a manual step'}",
                f"It only matters for {other[1] if len(other) > 1 else 'legacy setups'}",
                f"It has no effect on {other[2] if len(other) > 2 else 'the result'}",
            ]
            if (difficulty, n) == REWORDED[:2]:
                question, options = reworded_copy
            if (difficulty, n) == REWORDED[2:]:
                reworded_copy = ("So, " + question[0].lower() + question[1:], list(options))
            correct = rng.randrange(4)
            options[0], options[correct] = options[correct], options[0]
            explanation = f"The reference behaviour of {concept} is what the correct option states."
            # A few malformed rows, as real app data has them.
            roll = rng.random()
            if roll < 0.02:
                options = options[:3]
            elif roll < 0.04:
                correct = 4
            created_c = created + timedelta(days=1 + difficulty + n)
            data.challenges.append(
                (cid, skill_id, difficulty, question, json.dumps(options), correct, explanation, created_c.isoformat())
            )
            true_level = difficulty
            if rng.random() < 0.12:  # mislabelled: the written label is 3-5 levels off the truth
                shift = rng.choice([3, 4, 5])
                true_level = difficulty - shift if difficulty - shift >= 1 else difficulty + shift
            data.true_levels[cid] = min(10, max(1, true_level))
            items.append({
                "cid": cid, "label": difficulty, "created": created_c,
                "b": (data.true_levels[cid] - 5.5) * LOGITS_PER_LEVEL + rng.gauss(0.0, 0.15),
                "wrong_key": rng.random() < 0.04,
                "slowness": rng.choice([0.5, 0.7, 0.8, 0.9, 1.0, 1.6, 2.4]),
                "exposure": rng.choice([0.12, 1.0, 1.0, 1.0, 1.5]),  # 0.12: a new challenge, few answers
                "expected_ms": (10 + (difficulty - 1) * 5.5) * 1000,
            })
            if rng.random() < 0.85:
                data.judge_scores[cid] = round(min(1.0, max(0.0, rng.gauss(0.78, 0.12))), 3)
    return items


def _answer(rng: random.Random, item: dict, ability: float) -> tuple[bool, int | None, int | None]:
    """(is_correct, response_time ms, confidence) of one user on one challenge."""
    p = 1.0 / (1.0 + math.exp(-(ability - item["b"] + EASE)))
    if item["wrong_key"]:
        p = 1.0 - p  # the recorded key is a distractor: the able users are the ones marked wrong
    behaviour = rng.random()
    if behaviour < 0.03:  # a rapid guess: under a second, at chance
        is_correct, response_time = rng.random() < 0.25, rng.randint(150, 900)
    elif behaviour < 0.04:  # idle: the question was left open
        is_correct, response_time = rng.random() < p, rng.randint(600_000, 3_600_000)
    else:
        is_correct = rng.random() < p
        response_time = int(item["expected_ms"] * item["slowness"] * rng.lognormvariate(0.0, 0.25))
    confidence: int | None = min(5, max(1, round(rng.gauss(4 if is_correct else 2.5, 1))))
    bad = rng.random()
    if bad < 0.01:
        return is_correct, None, confidence
    if bad < 0.015:
        confidence = 7
    return is_correct, response_time, confidence


@lru_cache(maxsize=1)
def build_demo_data() -> DemoData:
    rng = random.Random(20241125)
    data = DemoData()
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    for s_index, (name, description, active) in enumerate(DEMO_SKILLS):
        skill_id = demo_skill_id(name)
        created = start + timedelta(days=7 * s_index)
        data.skills.append((skill_id, name, description, int(active), created.isoformat()))
        if not active:
            continue
        items = _challenge_rows(rng, data, name, skill_id, description, created)
        answered: dict[str, int] = {}
        for user in rng.sample(range(USER_POOL), USERS_PER_SKILL):
            ability = rng.gauss(0.0, ABILITY_SD)
            level = 5.5 + ability / LOGITS_PER_LEVEL
            weights = [it["exposure"] * math.exp(-((it["label"] - level) ** 2) / (2 * SERVING_SPREAD**2)) for it in items]
            chosen: set[int] = set()
            count = rng.randint(*ANSWERS_PER_USER)
            while len(chosen) < count:
                chosen.add(rng.choices(range(len(items)), weights)[0])
            for i in sorted(chosen):
                item = items[i]
                a = answered.get(item["cid"], 0)
                answered[item["cid"]] = a + 1
                is_correct, response_time, confidence = _answer(rng, item, ability)
                aid = str(uuid.uuid5(DEMO_NAMESPACE, f"answer:{item['cid']}:{a}"))
                when = item["created"] + timedelta(hours=a * 3 + rng.randrange(3))
                data.answers.append(
                    (aid, item["cid"], f"user-{user:04d}", int(is_correct), response_time, confidence, when.isoformat())
                )
    return data


def seed_app_database(conn: sqlite3.Connection) -> None:
    """Insert the demo skills, challenges and answers (idempotent)."""
    data = build_demo_data()
    with conn:
        conn.executemany("insert or ignore into skills values (?, ?, ?, ?, ?)", data.skills)
        conn.executemany("insert or ignore into challenges values (?, ?, ?, ?, ?, ?, ?, ?)", data.challenges)
        conn.executemany("insert or ignore into answers values (?, ?, ?, ?, ?, ?, ?)", data.answers)


def demo_judge_scores() -> dict[str, float]:
    """The LLM judge's composite score per demo challenge (some challenges have none)."""
    return dict(build_demo_data().judge_scores)
