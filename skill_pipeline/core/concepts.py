"""The concepts a real-world challenge exercises, so concept metrics apply to promoted items too.

The seed left promoted items with ``expected_concepts: []`` ("could be extracted from the
question"), so ``ConceptCoverage`` did not apply to a growing share of every dataset. A skill's
description lists its concepts ("joins, aggregation with GROUP BY, subqueries, …"); a challenge's
concepts are those of its skill that its question, options and explanation name, matched the way
``ConceptCoverage`` matches (``core.metrics.concept_covered``). It costs no LLM call and is exact
about what the text says; a challenge that names none of its skill's listed concepts gets none
(and the metric stays not applicable for it) rather than a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from skill_pipeline.core.metrics import concept_covered

_SPLIT = re.compile(r",|;|\band\b|\bversus\b|\bor\b")


def skill_concepts(description: str) -> list[str]:
    """The concepts a skill description lists, in order, without repeats (text after a colon if any)."""
    listed = description.split(":", 1)[-1]
    concepts: list[str] = []
    for part in _SPLIT.split(listed):
        phrase = " ".join(part.split()).strip(" .")
        if phrase and phrase.casefold() not in {c.casefold() for c in concepts}:
            concepts.append(phrase)
    return concepts


def challenge_concepts(description: str, texts: Sequence[str]) -> list[str]:
    """The skill's listed concepts that the challenge's texts name."""
    text = " ".join(t for t in texts if t)
    return [concept for concept in skill_concepts(description) if concept_covered(concept, text)]
