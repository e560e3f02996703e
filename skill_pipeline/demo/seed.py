"""Seeds the local app database (and the local judge scores) with a realistic learning app.

Seven skills (one of them deactivated), 50 challenges per active skill (5 per difficulty) and
about 5,600 answers. The spread is deliberate so that promotion has real work to do: some
challenges are answered too slowly, some mostly wrong, some have too few answers, some have no
judge score, and a few rows are malformed (three options, an out-of-range correct option, answers
with impossible confidence or a missing response time). Everything is derived from a fixed seed:
the same demo every time.
"""

from __future__ import annotations

import json
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
]


def demo_skill_id(name: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, f"skill:{name}"))


@dataclass
class DemoData:
    skills: list[tuple] = field(default_factory=list)
    challenges: list[tuple] = field(default_factory=list)
    answers: list[tuple] = field(default_factory=list)
    judge_scores: dict[str, float] = field(default_factory=dict)


def _concepts(description: str) -> list[str]:
    after_colon = description.split(":", 1)[-1]
    parts = [p.strip() for chunk in after_colon.split(",") for p in chunk.split(" and ")]
    return [p for p in parts if p] or [description]


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
        concepts = _concepts(description)
        for difficulty in range(1, 11):
            for n in range(5):
                cid = str(uuid.uuid5(DEMO_NAMESPACE, f"challenge:{name}:{difficulty}:{n}"))
                concept = concepts[(difficulty + n) % len(concepts)]
                other = [c for c in concepts if c != concept]
                question = _STEMS[n].format(concept=concept, skill=name)
                options = [
                    f"It applies {concept} the way the {name} reference documents it",
                    f"It replaces {concept} with {other[0] if other else 'a manual step'}",
                    f"It only matters for {other[1] if len(other) > 1 else 'legacy setups'}",
                    f"It has no effect on {other[2] if len(other) > 2 else 'the result'}",
                ]
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
                    (cid, skill_id, difficulty, question, json.dumps(options), correct, explanation,
                     created_c.isoformat())
                )
                # Latent quality of the challenge: how often users get it right and how slowly.
                p_correct = rng.choice([0.95, 0.9, 0.85, 0.8, 0.6, 0.35])
                slowness = rng.choice([0.5, 0.7, 0.8, 0.9, 1.0, 1.6, 2.4])
                n_answers = rng.choice([1, 3, 12, 16, 20, 24, 30, 40])
                expected_ms = (10 + (difficulty - 1) * 5.5) * 1000
                for a in range(n_answers):
                    aid = str(uuid.uuid5(DEMO_NAMESPACE, f"answer:{cid}:{a}"))
                    user = f"user-{rng.randrange(400):04d}"
                    is_correct = rng.random() < p_correct
                    response_time: int | None = int(expected_ms * slowness * rng.uniform(0.6, 1.4))
                    confidence: int | None = min(5, max(1, round(rng.gauss(4 if is_correct else 2.5, 1))))
                    bad = rng.random()
                    if bad < 0.01:
                        response_time = None
                    elif bad < 0.015:
                        confidence = 7
                    answered = created_c + timedelta(hours=a * 3 + rng.randrange(3))
                    data.answers.append(
                        (aid, cid, user, int(is_correct), response_time, confidence, answered.isoformat())
                    )
                if rng.random() < 0.85:
                    data.judge_scores[cid] = round(min(1.0, max(0.0, rng.gauss(0.78, 0.12))), 3)
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
