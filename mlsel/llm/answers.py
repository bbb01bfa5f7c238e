"""Answer extraction and normalisation for :mod:`mlsel.llm.scoring`.

Pulling the final answer out of a model response (an option letter, a GSM8K
number, a MATH boxed expression, code blocks) and normalising answers for
comparison. The rules and their measured agreement with published graders are
in the :mod:`mlsel.llm.scoring` docstring.
"""

from __future__ import annotations

import ast
import json
import re
import string
from typing import Any

LETTERS = "ABCDEFGHIJ"
"""Option letters of multiple-choice questions (MMLU-Pro has up to ten options)."""

# --------------------------------------------------------------------------- em_mc

_ANSWER_IS = re.compile(r"answer is \(?([A-J])\)?")
_ANSWER_COLON = re.compile(r"[aA]nswer:\s*([A-J])")
_END_LETTER = re.compile(r"(?:\(([A-J])\)|\b([A-J]))[\s.)\]*]*\Z")


def extract_choice_letter(text: str | None) -> str | None:
    """Extract the chosen option letter (A-J) from a response, or None.

    Order: first ``answer is (X)``, else last ``Answer: X``, else a final
    ``(X)`` / lone letter at the end of the text. See the module docstring
    of :mod:`mlsel.llm.scoring` for the measured agreement with the MMLU-Pro
    authors' extraction.
    """
    if not text:
        return None
    m = _ANSWER_IS.search(text)
    if m:
        return m.group(1)
    found = _ANSWER_COLON.findall(text)
    if found:
        return found[-1]
    m = _END_LETTER.search(text)
    if m:
        return m.group(1) or m.group(2)
    return None


def parse_choices(choices: Any) -> list[str]:
    """Options as a list of strings: a list, a JSON / Python-literal list string, or comma-separated text."""
    if choices is None:
        return []
    if isinstance(choices, (list, tuple)):
        return [str(c) for c in choices]
    s = str(choices).strip()
    if s.startswith("["):
        for parse in (json.loads, ast.literal_eval):
            try:
                v = parse(s)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(v, (list, tuple)):
                return [str(c) for c in v]
    return [c.strip() for c in s.split(",") if c.strip()]


def truth_letter(ground_truth: Any, choices: Any) -> str | None:
    """The ground truth as a letter A-J: a letter (optionally in parentheses), or the letter of the equal choice; else None."""
    gt = str(ground_truth).strip()
    m = re.fullmatch(r"\(?([A-Ja-j])\)?[.)]?", gt)
    if m:
        return m.group(1).upper()
    opts = [o.strip().lower() for o in parse_choices(choices)]
    if gt.lower() in opts:
        i = opts.index(gt.lower())
        if i < len(LETTERS):
            return LETTERS[i]
    return None


# --------------------------------------------------------------------------- numbers

_NUMBER = re.compile(r"-?\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


def _to_float(token: str) -> float | None:
    t = token.replace(",", "").replace("$", "").strip()
    if t.endswith("."):
        t = t[:-1]
    try:
        return float(t)
    except ValueError:
        return None


def _numbers(text: str) -> list[float]:
    out = []
    for tok in _NUMBER.findall(text):
        v = _to_float(tok)
        if v is not None:
            out.append(v)
    return out


def gsm8k_answer(text: str) -> float | None:
    """The GSM8K answer number: first number after the last ``####``, else the last number."""
    if "####" in text:
        nums = _numbers(text.rsplit("####", 1)[1])
        if nums:
            return nums[0]
    nums = _numbers(text)
    return nums[-1] if nums else None


# --------------------------------------------------------------------------- MATH


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` or ``\fbox{...}`` (nested braces handled), or None."""
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for m in reversed(starts):
        depth, i = 1, m.end()
        while i < len(text):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[m.end() : i]
            i += 1
    m = re.search(r"\\boxed ([^\s$]+)", text)  # "\boxed 5" without braces
    return m.group(1) if m else None


def math_answer(text: str, is_truth: bool = False) -> str | None:
    """The final answer string of a MATH solution (see :mod:`mlsel.llm.scoring`)."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    if is_truth:
        return text
    spans = re.findall(r"\$([^$]+)\$", text)
    if spans:
        return spans[-1]
    nums = _NUMBER.findall(text)
    return nums[-1] if nums else None


def _fix_fracs(s: str) -> str:
    # \frac12 -> \frac{1}{2}, \frac1{b} -> \frac{1}{b}, \frac{a}2 -> \frac{a}{2}
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac([a-zA-Z0-9])([a-zA-Z0-9])", r"\\frac{\1}{\2}", s)
    return s


def normalize_math(s: str) -> str:
    """Normalise a LaTeX answer string for comparison (rules in :mod:`mlsel.llm.scoring`)."""
    s = str(s).strip()
    s = s.replace("\n", "")
    s = re.sub(r"\\[,;:! ]", "", s)
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s).replace("\\circ", "")
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    # trailing units in \text{...} / \mbox{...} after a value are dropped; others unwrapped
    s = re.sub(r"(?<=\S)\s*\\(?:text|mbox|mathrm)\{\s*[a-zA-Z ]+\}\s*$", "", s)
    s = re.sub(r"\\(?:text|mbox|mathrm|textbf)\{([^{}]*)\}", r"\1", s)
    s = s.replace(" ", "")
    s = re.sub(r"^[a-zA-Z]\w*=", "", s)  # leading "x ="
    s = s.rstrip(".")
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = _fix_fracs(s)
    s = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", s)  # 1,000 -> 1000
    if s.startswith("."):
        s = "0" + s
    s = re.sub(r"(?<![\d])\.(\d)", r"0.\1", s)
    if s.startswith("{") and s.endswith("}") and s.count("{") == 1:
        s = s[1:-1]
    return s


def math_number(s: str) -> float | None:
    r"""A normalised answer as a number (decimal, ``a/b``, ``\frac{a}{b}``, optional sign), or None."""
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}", s)
    if m:
        den = float(m.group(3))
        return None if den == 0 else (-1 if m.group(1) else 1) * float(m.group(2)) / den
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?)", s)
    if m:
        den = float(m.group(2))
        return None if den == 0 else float(m.group(1)) / den
    if re.fullmatch(r"-?\d+(?:\.\d+)?", s):
        return float(s)
    return None


# --------------------------------------------------------------------------- text overlap

_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles, collapse whitespace."""
    s = str(s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


# --------------------------------------------------------------------------- code_eval


def parse_assertions(ground_truth: Any) -> list[str]:
    """Assertion strings from a list, a JSON list or a Python-literal list string.

    Uses :func:`json.loads` then :func:`ast.literal_eval`, never ``eval``.

    Raises
    ------
    ValueError
        If the ground truth is not a list of strings.
    """
    value: Any = ground_truth
    if isinstance(ground_truth, str):
        s = ground_truth.strip()
        value = None
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(s)
                break
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        if value is None:
            if s.startswith("assert"):
                value = [line for line in s.splitlines() if line.strip()]
            else:
                raise ValueError("code_eval ground truth is not a list of assertion strings")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise ValueError("code_eval ground truth is not a list of assertion strings")
    return [a for a in value if a.strip()]


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(response: str) -> str:
    """Code from a response: its ```python blocks, else all fenced blocks, else the raw text."""
    blocks = _FENCE.findall(response or "")
    py = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    if py:
        return "\n".join(py)
    if blocks:
        return "\n".join(body for _, body in blocks)
    return response or ""
