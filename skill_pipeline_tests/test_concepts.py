"""Concepts of promoted items: the skill's listed concepts that the challenge's text names."""

from skill_pipeline.core.concepts import challenge_concepts, skill_concepts

SQL = "Writing SQL queries: joins, aggregation with GROUP BY, subqueries, window functions, indexes and query plans"


def test_a_description_lists_its_concepts_once_in_order():
    assert skill_concepts(SQL) == ["joins", "aggregation with GROUP BY", "subqueries", "window functions", "indexes", "query plans"]
    assert skill_concepts("Spanish: ser versus estar, Ser, articles") == ["ser", "estar", "articles"]
    assert skill_concepts("") == []


def test_a_challenge_gets_the_concepts_its_text_names():
    texts = ["Which statement about window functions is correct?", "A join of two tables", "", "Rows per partition"]
    assert challenge_concepts(SQL, texts) == ["joins", "window functions"]


def test_a_challenge_naming_none_gets_none_not_a_guess():
    assert challenge_concepts(SQL, ["What is the capital of France?", "Paris"]) == []


def test_a_promoted_item_carries_its_concepts_so_concept_coverage_applies():
    from skill_pipeline.core.composition import candidate_to_item
    from skill_pipeline.core.metrics import ConceptCoverage
    from skill_pipeline.models import Candidate, Skill

    skill = Skill(id="skill-git", name="Git", description="Using Git: commits, branches, merging, rebasing and remotes")
    candidate = Candidate(
        challenge_id="ch-9", difficulty=5, question="Which command rewrites commit history on a branch?",
        options=["git log", "git rebase", "git status", "git fetch"], correct_option=1,
        explanation="Rebasing creates new commits.", eligible=True,
    )
    item = candidate_to_item(skill, candidate)
    assert item.input["expected_concepts"] == item.expected_output["required_concepts"] == ["commits", "rebasing"]
    challenge = {"question": "What does git log show about commits?", "options": ["a", "b", "c", "d"], "correct_index": 0,
                 "explanation": "It lists them newest first."}
    result = ConceptCoverage().score(challenge=challenge, **item.data())
    assert result.value == 0.5  # commits named, rebasing not
