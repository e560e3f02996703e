"""Near-duplicate questions: rewordings are caught at the default threshold, different questions
are not, and filtering keeps the first of each group and never re-adds a live item."""

import pytest

from skill_pipeline.core.near_duplicates import (
    DUPLICATES_CANDIDATE,
    DUPLICATES_EXISTING,
    PAIR_COLUMNS,
    REJECTED_COLUMNS,
    filter_new,
    near_duplicate_pairs,
)

FUNCTION = "Which keyword defines a function in Python?"
REORDERED = "Which Python keyword defines a function?"  # same words, another order
FILLER = "In Python, which keyword defines a function? Choose the best answer."  # extra filler
BINARY_SEARCH = "What is the time complexity of binary search on a sorted array?"
GIL = "What does the global interpreter lock in CPython prevent?"
HTTP = "Which HTTP status code means that the requested resource was not found?"


def test_rewordings_are_caught_and_different_questions_are_not():
    pairs = near_duplicate_pairs([FUNCTION, BINARY_SEARCH, REORDERED, GIL, FILLER, HTTP])
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    found = {(int(i), int(j)) for i, j in zip(pairs["i"], pairs["j"])}
    assert found == {(0, 2), (0, 4), (2, 4)}
    assert (pairs["score"] >= 90).all()


def test_case_and_punctuation_do_not_matter_and_the_threshold_is_a_parameter():
    pairs = near_duplicate_pairs([FUNCTION, FUNCTION.upper().replace("?", " !!"), GIL])
    assert pairs[["i", "j"]].values.tolist() == [[0, 1]] and pairs["score"].iloc[0] == 100
    assert near_duplicate_pairs([FUNCTION, BINARY_SEARCH], threshold=90).empty
    assert len(near_duplicate_pairs([FUNCTION, BINARY_SEARCH], threshold=30)) == 1
    assert near_duplicate_pairs([]).empty and near_duplicate_pairs([FUNCTION]).empty
    assert near_duplicate_pairs(["", ""]).empty  # empty texts match nothing
    with pytest.raises(ValueError):
        near_duplicate_pairs([FUNCTION], threshold=120)


def test_filter_new_against_existing_items_and_against_each_other():
    existing = [GIL, HTTP]
    candidates = [
        FUNCTION,  # 0 new: kept
        "In CPython, what does the global interpreter lock prevent?",  # 1 duplicates live GIL
        REORDERED,  # 2 duplicates candidate 0: rejected, the first is kept
        BINARY_SEARCH,  # 3 new: kept
        FILLER,  # 4 duplicates candidate 0 as well
    ]
    kept, rejected = filter_new(candidates, existing)
    assert kept == [0, 3]
    assert list(rejected.columns) == list(REJECTED_COLUMNS)
    assert rejected["candidate_index"].tolist() == [1, 2, 4]
    first = rejected.iloc[0]
    assert (first["duplicate_of"], first["duplicate_index"], first["duplicate_text"]) == (DUPLICATES_EXISTING, 0, GIL)
    assert rejected.iloc[1][["duplicate_of", "duplicate_index", "duplicate_text"]].tolist() == [
        DUPLICATES_CANDIDATE, 0, FUNCTION
    ]
    assert rejected.iloc[2]["duplicate_text"] == FUNCTION
    assert (rejected["score"] >= 90).all()


def test_a_candidate_is_only_compared_with_what_will_be_live():
    """B duplicates A (rejected); C duplicates only B: C is kept, since B never goes live."""
    a = "alpha beta gamma delta"
    b = "alpha beta gamma delta epsilon"  # contains every word of a: 100
    c = "beta gamma delta epsilon zeta"  # ≈ 90.6 against b, ≈ 84.2 against a
    assert near_duplicate_pairs([a, b, c])[["i", "j"]].values.tolist() == [[0, 1], [1, 2]]
    kept, rejected = filter_new([a, b, c], existing=[])
    assert kept == [0, 2] and rejected["candidate_index"].tolist() == [1]
    kept, rejected = filter_new([], existing=[GIL])
    assert kept == [] and rejected.empty and list(rejected.columns) == list(REJECTED_COLUMNS)
    kept, rejected = filter_new([FUNCTION, FUNCTION], existing=[])
    assert kept == [0] and rejected["duplicate_index"].tolist() == [0]
    kept, rejected = filter_new([FUNCTION, None], existing=[])
    assert kept == [0, 1]  # a missing text is empty and duplicates nothing
