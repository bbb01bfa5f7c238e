"""The pre-registered choice rule: the one-standard-error rule over candidates ordered from simplest to most complex.

Cross-validation scores every candidate on the same folds. The arg-max (the highest mean CV utility) wins by noise as
often as by signal when candidates are close, and the static choices (the best single model, the per-category lookup)
are what a router must beat. So the suite chooses with the one-standard-error rule (Hastie, Tibshirani and Friedman,
*The Elements of Statistical Learning*, 7.10), made paired:

1. Order the candidates from simplest to most complex: the best single model, the per-category lookup, then the
   routers (:data:`STATIC_CANDIDATES` first, then the selectors in the run's order).
2. The CV-best is the candidate with the highest mean CV utility (ties: the simpler).
3. For each candidate ``c``, its per-fold difference to the CV-best, ``d_f = u_c,f - u_best,f``, has mean ``mean(d)``
   and standard error ``se_c = sd(d, ddof=1) / sqrt(F)`` over the ``F`` folds (all CV seeds' folds together).
4. The choice is the simplest candidate with ``mean(d) >= -se_c``: within one standard error of the CV-best.

The CV-best itself always qualifies (``d = 0``), so a router is chosen over a simpler candidate only where CV shows it
better by more than the folds' own disagreement. The same rule picks the headline router, the operating points and the
shipped routing config; the plain arg-max stays beside it as a labelled column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsel.data.costs import fill_missing_cost
from mlsel.data.outcomes import OutcomeMatrix
from mlsel.selection.base import best_single_index, utility
from mlsel.selection.lookup import GroupLookup

BEST_SINGLE = "best_single"
"""Candidate name of the best single model (chosen on each fit's training queries)."""
CATEGORY_LOOKUP = "category_lookup"
"""Candidate name of the per-category lookup (:mod:`mlsel.selection.lookup`, fitted on each fit's training queries)."""
STATIC_CANDIDATES = (BEST_SINGLE, CATEGORY_LOOKUP)
"""The static candidates, simplest first; every rule's order starts with them."""

RULE = "one-SE"
"""The rule's short name in the tables."""
RULE_TEXT = ("the simplest candidate (best single model, per-category lookup, then the routers) whose mean CV utility is within "
             "one standard error of its paired per-fold difference to the CV-best")
"""The rule in one sentence, for the report and the tables' notes."""

TOL = 1e-12
"""Float slack on ``mean(d) >= -se``: a candidate equal to the CV-best on every fold qualifies."""

RULE_COLUMNS = ["candidate", "order", "n_folds", "cv_mean", "diff_to_best", "se", "within_one_se", "argmax", "chosen"]


@dataclass(frozen=True)
class RuleChoice:
    """What :func:`one_se_rule` chose and why."""

    chosen: str
    """The simplest candidate within one standard error of the CV-best."""
    argmax: str
    """The plain arg-max: the highest mean CV utility (ties: the simpler)."""
    table: pd.DataFrame
    """One row per candidate in order, :data:`RULE_COLUMNS`."""


def one_se_rule(per_fold: pd.DataFrame) -> RuleChoice:
    """Choose among the columns of ``per_fold`` (one row per CV fold, one column per candidate, simplest first; values:
    the candidate's CV utility on that fold, higher is better) by the one-standard-error rule (module docstring).

    A candidate with a missing fold is an error: the rule compares candidates on the same folds.
    """
    if per_fold.shape[1] == 0 or len(per_fold) == 0:
        raise ValueError("one_se_rule: no candidates or no folds")
    if per_fold.isna().any().any():
        missing = [c for c in per_fold.columns if per_fold[c].isna().any()]
        raise ValueError(f"one_se_rule: candidates {missing} have no score on some folds; every candidate needs every fold")
    u = per_fold.to_numpy(dtype=float)
    means = u.mean(axis=0)
    names = [str(c) for c in per_fold.columns]
    best = int(np.argmax(means))  # the first maximum: ties go to the simpler
    d = u - u[:, [best]]
    n = len(u)
    se = d.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(names))
    within = d.mean(axis=0) >= -se - TOL
    chosen = int(np.argmax(within))  # the first candidate within (the CV-best always is)
    table = pd.DataFrame({"candidate": names, "order": np.arange(len(names)), "n_folds": n, "cv_mean": means,
                          "diff_to_best": d.mean(axis=0), "se": se, "within_one_se": within,
                          "argmax": np.arange(len(names)) == best, "chosen": np.arange(len(names)) == chosen})
    return RuleChoice(names[chosen], names[best], table[RULE_COLUMNS])


CHOICE_COLUMNS = ["pool", "rule", "candidate", "label", *RULE_COLUMNS[1:]]
"""choice.csv and ship_choice.csv: one row per (pool, rule, candidate)."""


def rule_table(pool: str, rule: str, choice: RuleChoice, labels: dict[str, str]) -> pd.DataFrame:
    """One choice's table for choice.csv: ``pool``, ``rule`` (what was chosen: ``headline``, ``at_best``, ``matched`` or
    ``ship``), the candidate's label, then :data:`RULE_COLUMNS`."""
    t = choice.table.copy()
    t.insert(0, "pool", pool)
    t.insert(1, "rule", rule)
    t.insert(3, "label", [labels.get(c, c) for c in t["candidate"]])
    return t[CHOICE_COLUMNS]


COST_CHOICE_COLUMNS = ["pool", "rule", "candidate", "label", "n_folds", "cv_cost_mean", "cost_over_cheapest", "cost_se", "within_one_se",
                       "argmax", "chosen"]
"""choice_cost.csv: the operating points' rule tables in cost terms (one row per pool, rule and candidate)."""


def cost_rule_table(pool: str, rule: str, choice: RuleChoice, labels: dict[str, str]) -> pd.DataFrame:
    """An operating point's rule table (utility: minus the per-fold cost) in cost terms: ``cv_cost_mean``, how much dearer
    than the cheapest (``cost_over_cheapest``) and its standard error (``cost_se``)."""
    t = rule_table(pool, rule, choice, labels)
    t = t.assign(cv_cost_mean=-t["cv_mean"], cost_over_cheapest=-t["diff_to_best"], cost_se=t["se"])
    return t[COST_CHOICE_COLUMNS]


FOLD_SCORE_COLUMNS = ["pool", "selector", "combo", "cv_seed", "fold", "quality", "utility", "cost"]
"""One row per (candidate, CV fold): its mean quality, utility and cost on the fold's validation queries."""


def fit_static(tr: OutcomeMatrix, quality_weight: float, min_queries: int) -> tuple[int, GroupLookup]:
    """The static candidates fitted on ``tr``: the best single model's column and the per-category lookup (the one fit
    every static choice uses: on a CV fold's training part here, on the whole training split in the summary and the
    ship stage)."""
    best = best_single_index(tr.quality, tr.latency_s, quality_weight)
    return best, GroupLookup.fit(tr.categories, tr.quality, tr.latency_s, list(tr.models), quality_weight, min_queries)


def static_fold_scores(pool: str, tr: OutcomeMatrix, folds: list[tuple[int, int, np.ndarray, np.ndarray]], seed: int,
                       quality_weight: float, min_queries: int, cost: np.ndarray | None) -> pd.DataFrame:
    """The static candidates scored on the CV folds as the CV scores a selector (:func:`mlsel.tuning.cv.cv_task`).

    ``folds``: ``(seed offset, fold, fit_idx, valid_idx)`` over the training split ``tr`` (:func:`mlsel.tuning.cv.cv_folds`).
    On each fold the best single model and the per-category lookup are fitted on ``fit_idx`` and scored on ``valid_idx``
    (utility with ``quality_weight``; a missing validation cost takes the model's training mean). Rows:
    :data:`FOLD_SCORE_COLUMNS`, ``combo`` 0.
    """
    u = utility(tr.quality, tr.latency_s, quality_weight)
    rows = []
    for s, f, fit_idx, valid_idx in folds:
        best, lookup = fit_static(tr.subset(fit_idx), quality_weight, min_queries)
        cv = None if cost is None else fill_missing_cost(cost[valid_idx], reference=cost)
        ar = np.arange(len(valid_idx))
        for name, idx in ((BEST_SINGLE, np.full(len(valid_idx), best)), (CATEGORY_LOOKUP, lookup.predict_index(tr.categories[valid_idx]))):
            rows.append({"pool": pool, "selector": name, "combo": 0, "cv_seed": seed + s, "fold": f,
                         "quality": float(tr.quality[valid_idx][ar, idx].mean()), "utility": float(u[valid_idx][ar, idx].mean()),
                         "cost": float(cv[ar, idx].mean()) if cv is not None else np.nan})
    return pd.DataFrame(rows, columns=FOLD_SCORE_COLUMNS)


def per_fold(scores: pd.DataFrame, candidates: dict[str, int], value: str = "utility") -> pd.DataFrame:
    """Pivot one pool's fold scores (:data:`FOLD_SCORE_COLUMNS`) to one column per candidate, in ``candidates``' order.

    ``candidates``: name -> the combination (``combo``) scored for it.
    """
    cols = {}
    for name, combo in candidates.items():
        s = scores[(scores["selector"] == name) & (scores["combo"] == combo)]
        if s.empty:
            raise ValueError(f"no CV fold scores for candidate {name!r} (combination {combo})")
        cols[name] = s.set_index(["cv_seed", "fold"])[value]
    return pd.DataFrame(cols)
