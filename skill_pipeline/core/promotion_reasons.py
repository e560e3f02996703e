"""The vocabulary of promotion: why a challenge is rejected, why an answer is dropped, and the
statuses of calibration. Fixed strings without numbers, so "rejected by reason" is a count of
tokens; the numbers themselves are in the candidates frame's other columns."""

from __future__ import annotations

from skill_pipeline.core.item_stats import REASON_IDLE, REASON_RAPID_GUESS

# Row reasons (the same strings as core.validation's check names).
REASON_MISSING_ID = "missing challenge id"
REASON_DUPLICATE_ID = "duplicate challenge id"
REASON_INVALID_DIFFICULTY = "invalid difficulty"
REASON_EMPTY_QUESTION = "empty question"
REASON_INVALID_OPTIONS = "invalid options"
REASON_INVALID_CORRECT_OPTION = "invalid correct option"
# Evidence reasons.
REASON_NO_VALID_ANSWERS = "no valid answers"
REASON_TOO_FEW_ANSWERS = "too few answers"
REASON_LOW_CORRECT_RATE = "correct rate lower bound below minimum"
REASON_SLOW_RESPONSES = "response time score below minimum"
REASON_LOW_DISCRIMINATION = "discrimination below minimum"
REASON_NO_USER_KEYS = "no discrimination (no user keys)"
REASON_TOO_FEW_USERS = "no discrimination (too few users)"
REASON_NO_VARIATION = "no discrimination (no variation)"
REASON_NOT_CALIBRATED = "not calibrated"
REASON_NO_JUDGE_SCORE = "no judge score"
REASON_INVALID_JUDGE_SCORE = "judge score outside 0-1"
REASON_LOW_JUDGE_SCORE = "judge score below minimum"
# The one reason with a name in it: "near-duplicate of <item key>" (core.promotion_duplicates);
# counted under this name, so "rejected by reason" still has a fixed vocabulary.
REASON_NEAR_DUPLICATE = "near-duplicate of a live item"

REJECTION_REASONS: tuple[str, ...] = (
    REASON_MISSING_ID,
    REASON_DUPLICATE_ID,
    REASON_INVALID_DIFFICULTY,
    REASON_EMPTY_QUESTION,
    REASON_INVALID_OPTIONS,
    REASON_INVALID_CORRECT_OPTION,
    REASON_NO_VALID_ANSWERS,
    REASON_TOO_FEW_ANSWERS,
    REASON_LOW_CORRECT_RATE,
    REASON_SLOW_RESPONSES,
    REASON_LOW_DISCRIMINATION,
    REASON_NO_USER_KEYS,
    REASON_TOO_FEW_USERS,
    REASON_NO_VARIATION,
    REASON_NOT_CALIBRATED,
    REASON_NO_JUDGE_SCORE,
    REASON_INVALID_JUDGE_SCORE,
    REASON_LOW_JUDGE_SCORE,
    REASON_NEAR_DUPLICATE,
)
INVALID_ROW_REASONS: frozenset[str] = frozenset(REJECTION_REASONS[:6])
REASON_SEPARATOR = "; "

ANSWER_MISSING_IS_CORRECT = "missing is_correct"
ANSWER_MISSING_RESPONSE_TIME = "missing response time"
ANSWER_NEGATIVE_RESPONSE_TIME = "negative response time"
ANSWER_INVALID_CONFIDENCE = "confidence outside 1-5"
ANSWER_REJECTION_REASONS: tuple[str, ...] = (
    ANSWER_MISSING_IS_CORRECT,
    ANSWER_MISSING_RESPONSE_TIME,
    ANSWER_NEGATIVE_RESPONSE_TIME,
    ANSWER_INVALID_CONFIDENCE,
)
HYGIENE_EXCLUSIONS: tuple[str, ...] = (REASON_RAPID_GUESS, REASON_IDLE)

# calibration_status values (a "not calibrated: <reason>" carries calibration's reason).
CALIBRATION_CONFIRMED = "confirmed"
CALIBRATION_MOVED = "moved to calibrated level"
CALIBRATED_WITHOUT_LABEL = "calibrated; no valid written label"
NOT_CALIBRATED_PREFIX = "not calibrated: "
NO_USER_KEYS = "no user keys"
