"""Scoring one model response against its ground truth, by metric.

:func:`score` is the single entry point. It returns a float in ``[0, 1]`` or
``None`` when the pair cannot be scored (no ground truth, or ``code_eval`` not
enabled), and raises ``ValueError`` naming the ground truth when its metric
cannot read it (a multiple-choice truth that is no letter nor choice, a
GSM8K/MATH truth without an answer, a code_eval truth without assertions).
Neither is ever turned into a quality value: the benchmark records such pairs
with status ``unscored`` (with the reason in ``error``) / ``skipped_code_eval``
and counts them.

The answer extraction and normalisation helpers live in
:mod:`mlsel.llm.answers` (and are importable from here too).

Unlike the reference ``benchmark.py`` there is **no partial credit** on the
correctness metrics (no 0.8 for "the letter appears somewhere", no 0.5 for a
missing ground truth, no 0.3 for "gave some code"). Only ``f1_score`` and
``commongen_coverage`` are continuous, because they are defined that way.

Metric dispatch (:func:`resolve_metric`)
----------------------------------------
Metric names are matched case-insensitively. Any record with non-empty
``choices`` is scored as ``em_mc`` whatever ``metric`` says (as the reference
does). A missing or unknown metric is ``cem``.

Rules
-----
em_mc (multiple choice, letters A-J)
    The answer letter is extracted from the response by
    :func:`extract_choice_letter`, a re-implementation of the MMLU-Pro
    authors' grader, in this order:

    1. the **first** ``answer is (X)`` / ``answer is X`` (case-sensitive, as
       MMLU-Pro); the first rather than the last because MMLU-Pro grades that
       way and because models that keep generating often start a new
       question after answering (on the 5 MMLU-Pro zips, first-match agrees
       with the authors' ``pred`` on 100.0% of extractable records, last-match
       on 99.3%);
    2. else the last ``Answer: X`` / ``answer: X``;
    3. else a final ``(X)`` or a lone letter at the very end of the text
       (trailing spaces, ``.``, ``)``, ``]`` or ``*`` allowed). MMLU-Pro's
       newest grader takes the last standalone capital A-J *anywhere*; that
       grabs words such as "I" or "A" inside prose, so only the end of the
       text is trusted here.

    1.0 if the extracted letter equals the ground-truth letter, else 0.0;
    0.0 when nothing can be extracted. A ground truth that is not a letter
    but equals one of ``choices`` (case-insensitively) is mapped to its
    letter; any other ground truth is a ``ValueError``. Measured on the five MMLU-Pro model-output zips (60,160 records)
    against the authors' extracted ``pred``:

    ===========================  ==========  ====================  ===========
    file                         agreement   pred null: n          extract any
    ===========================  ==========  ====================  ===========
    Meta-Llama-3.1-70B-Instruct  0.9794      0                     -
    Meta-Llama-3.1-8B-Instruct   0.9157      0                     -
    Mistral-7B-Instruct-v0.2     1.0000      2,237                 122 (5.5%)
    Phi-3-mini-4k-instruct       1.0000      1,855                 179 (9.6%)
    Qwen1.5-7B-Chat              1.0000      2,809                 983 (35.0%)
    pooled                       0.9762      6,901                 1,284 (18.6%)
    ===========================  ==========  ====================  ===========

    Every disagreement in the two Llama-3.1 files is a record where no
    letter can be extracted (degenerate, truncated or looping text) and the
    file nevertheless holds a ``pred``: those files never contain a null
    ``pred``, and on exactly those records ``pred`` is right 9.6% / 10.9% of
    the time, i.e. a random guess among ten options filled in by whoever
    produced the file. Where a letter is extracted, agreement is 100% in all
    five files. Where ``pred`` is null, the end-of-text rule still finds an
    answer in 18.6% of records (e.g. "... the correct answer would be (E).",
    which MMLU-Pro's older two-regex grader missed).

GSM8K
    Ground truth: the text after the last ``####`` (else the last number in
    it). Response: the first number after the last ``####`` if present, else
    the last number in the text. ``,`` and ``$`` are stripped and the two are
    compared **numerically** as floats with relative tolerance 1e-6, so
    ``3.5 != 35`` and ``1.50 == 1.5``. No number in the response: 0.0.

MATH
    The answer is the content of the last ``\\boxed{...}`` / ``\\fbox{...}``
    (nested braces handled) of the ground truth, or the raw ground truth if
    there is none. For the response: the last boxed expression, else the last
    ``$...$`` span, else the last number. Both are normalised by
    :func:`normalize_math` (``\\left``/``\\right``, ``\\dfrac``/``\\tfrac`` ->
    ``\\frac``, ``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt2`` -> ``\\sqrt{2}``,
    spaces and thin spaces, ``^\\circ``, ``\\%``, ``$``, a leading ``x =``, a
    trailing ``.``, trailing ``\\text{...}`` units, other ``\\text{}`` unwrapped,
    thousands separators). Equal strings: 1.0; else if both parse as numbers
    (decimals, ``a/b``, ``\\frac{a}{b}``, optional sign) and are equal within
    relative tolerance 1e-6: 1.0; else 0.0.

f1_score
    SQuAD token F1: both texts lower-cased, punctuation and the articles
    a/an/the removed, split on whitespace; precision and recall from the
    multiset overlap. Continuous in [0, 1] by definition.

code_eval
    Opt-in (``enable_code_eval=True``); otherwise :func:`score` returns None.
    The ground truth is a list of assertion strings, given as a list, a JSON
    list, or a Python-literal list parsed with :func:`ast.literal_eval`
    (never ``eval``). The code is the concatenation of the response's
    ```` ```python ```` (or ```` ```py ````) fenced blocks, else of all
    fenced blocks, else the raw response. It runs in a separate, resource
    limited process (:func:`mlsel.llm.sandbox.run_untrusted`). Score 1.0 if all
    assertions pass, else 0.0: pass@1 of a single sample, with no credit
    for a fraction of the tests.

commongen_coverage
    The ground truth is a comma-separated list of concept words; the score is
    the fraction of them found in the lower-cased response as a word prefix
    (``\\bdog`` matches "dogs", not "hotdog"). Continuous by definition.

cem (default for a missing or unknown metric)
    Conditional exact match: SQuAD normalisation (as f1_score, whitespace
    collapsed); 1.0 if the normalised ground truth equals the normalised
    response or is contained in it, else 0.0.

Missing ground truth (None, empty or blank string, empty list): None.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from typing import Any

from mlsel.llm.answers import (
    LETTERS,
    extract_choice_letter,
    extract_code,
    gsm8k_answer,
    last_boxed,
    math_answer,
    math_number,
    normalize_answer,
    normalize_math,
    parse_assertions,
    parse_choices,
    truth_letter,
)
from mlsel.llm.sandbox import run_untrusted

__all__ = [
    "METRICS",
    "resolve_metric",
    "has_ground_truth",
    "score",
    "score_em_mc",
    "score_gsm8k",
    "score_math",
    "f1_score",
    "cem",
    "commongen_coverage",
    "score_code",
    # extraction and normalisation helpers, defined in mlsel.llm.answers
    "LETTERS",
    "extract_choice_letter",
    "extract_code",
    "gsm8k_answer",
    "last_boxed",
    "math_answer",
    "normalize_answer",
    "normalize_math",
    "parse_assertions",
    "parse_choices",
]

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("em_mc", "gsm8k", "math", "f1_score", "code_eval", "commongen_coverage", "cem")
"""Canonical (lower-case) metric names understood by :func:`score`."""

# --------------------------------------------------------------------------- dispatch


def resolve_metric(metric: str | None, choices: Any = None) -> str:
    """Canonical metric name for a record.

    Parameters
    ----------
    metric : str or None
        The record's ``metric`` field (any case).
    choices : any
        The record's ``choices`` field; when non-empty the metric is ``em_mc``.

    Returns
    -------
    str
        One of :data:`METRICS`; ``cem`` for a missing or unknown metric.
    """
    if _has_choices(choices):
        return "em_mc"
    m = (metric or "").strip().lower()
    aliases = {"mc": "em_mc", "f1": "f1_score", "exact_match": "cem"}
    m = aliases.get(m, m)
    return m if m in METRICS else "cem"


def _has_choices(choices: Any) -> bool:
    if choices is None:
        return False
    if isinstance(choices, str):
        return bool(choices.strip())
    try:
        return len(choices) > 0
    except TypeError:
        return True


def has_ground_truth(ground_truth: Any) -> bool:
    """True unless the ground truth is None, blank, or an empty container."""
    if ground_truth is None:
        return False
    if isinstance(ground_truth, str):
        return bool(ground_truth.strip())
    if isinstance(ground_truth, (list, tuple, dict)):
        return len(ground_truth) > 0
    return True


def score(
    response: str | None,
    ground_truth: Any,
    metric: str | None = None,
    choices: Any = None,
    *,
    enable_code_eval: bool = False,
    code_timeout_s: float = 5.0,
) -> float | None:
    """Score a response against its ground truth (rules in the module docstring).

    Parameters
    ----------
    response : str or None
        The model's answer text; None is treated as an empty answer.
    ground_truth : any
        The expected answer (a string for most metrics, a list of assertion
        strings for ``code_eval``).
    metric : str, optional
        Metric name; see :func:`resolve_metric`.
    choices : any, optional
        Multiple-choice options; non-empty means ``em_mc``.
    enable_code_eval : bool
        Run ``code_eval`` assertions in the sandbox; when False such records
        score None.
    code_timeout_s : float
        Wall-clock limit for one ``code_eval`` sandbox run.

    Returns
    -------
    float or None
        Score in [0, 1], or None when unscorable.
    """
    if not has_ground_truth(ground_truth):
        return None
    text = response or ""
    m = resolve_metric(metric, choices)
    if m == "em_mc":
        return score_em_mc(text, ground_truth, choices)
    if m == "gsm8k":
        return score_gsm8k(text, str(ground_truth))
    if m == "math":
        return score_math(text, str(ground_truth))
    if m == "f1_score":
        return f1_score(text, str(ground_truth))
    if m == "code_eval":
        if not enable_code_eval:
            return None
        return score_code(text, ground_truth, timeout_s=code_timeout_s)
    if m == "commongen_coverage":
        return commongen_coverage(text, str(ground_truth))
    return cem(text, str(ground_truth))


# --------------------------------------------------------------------------- em_mc

def score_em_mc(response: str, ground_truth: Any, choices: Any = None) -> float:
    """1.0 if the extracted letter equals the ground-truth letter, else 0.0."""
    truth = truth_letter(ground_truth, choices)
    if truth is None:
        raise ValueError(f"em_mc ground truth {str(ground_truth)!r} is neither a letter A-J nor one of the choices {parse_choices(choices)}")
    return 1.0 if extract_choice_letter(response) == truth else 0.0


# --------------------------------------------------------------------------- numbers

def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def score_gsm8k(response: str, ground_truth: str) -> float:
    """Numeric comparison of the GSM8K answers (relative tolerance 1e-6)."""
    truth = gsm8k_answer(ground_truth)
    if truth is None:
        raise ValueError(f"GSM8K ground truth {ground_truth!r} has no number")
    got = gsm8k_answer(response)
    if got is None:
        return 0.0
    return 1.0 if _close(truth, got) else 0.0


# --------------------------------------------------------------------------- MATH


def score_math(response: str, ground_truth: str) -> float:
    """1.0 for an equal normalised answer string or an equal number, else 0.0."""
    truth = math_answer(ground_truth, is_truth=True)
    if truth is None:
        raise ValueError(f"MATH ground truth {ground_truth!r} has no answer")
    got = math_answer(response)
    if got is None:
        return 0.0
    a, b = normalize_math(truth), normalize_math(got)
    if a == b and a != "":
        return 1.0
    x, y = math_number(a), math_number(b)
    if x is not None and y is not None and _close(x, y):
        return 1.0
    return 0.0


# --------------------------------------------------------------------------- text overlap

def f1_score(response: str, ground_truth: str) -> float:
    """SQuAD token-level F1 (multiset overlap) in [0, 1]."""
    pred = normalize_answer(response).split()
    gold = normalize_answer(ground_truth).split()
    if not pred or not gold:
        return 1.0 if pred == gold else 0.0
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def cem(response: str, ground_truth: str) -> float:
    """Conditional exact match: 1.0 if the normalised truth equals or is contained in the response."""
    gold = normalize_answer(ground_truth)
    pred = normalize_answer(response)
    if not gold:
        return 1.0 if not pred else 0.0
    return 1.0 if gold == pred or gold in pred else 0.0


def commongen_coverage(response: str, ground_truth: str) -> float:
    """Fraction of comma-separated concepts present as word prefixes in the response."""
    concepts = [c.strip().lower() for c in str(ground_truth).split(",") if c.strip()]
    if not concepts:
        return 0.0
    text = (response or "").lower()
    hit = sum(1 for c in concepts if re.search(r"\b" + re.escape(c), text))
    return hit / len(concepts)


# --------------------------------------------------------------------------- code_eval


def score_code(response: str, ground_truth: Any, timeout_s: float = 5.0) -> float:
    """pass@1: 1.0 if every assertion passes in the sandbox, else 0.0."""
    tests = parse_assertions(ground_truth)
    if not tests:
        raise ValueError(f"code_eval ground truth {str(ground_truth)[:80]!r} holds no assertion")
    result = run_untrusted(extract_code(response), tests, timeout_s=timeout_s)
    return 1.0 if result.passed else 0.0
