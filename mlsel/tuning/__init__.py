"""Tuning by cross-validation inside the training split, then one held-out evaluation.

:func:`tune_selectors` ``(p)`` takes the validated tune-stage parameter object
(``stage_params(params, "tune")``). Modules: :mod:`~mlsel.tuning.grids` (search
spaces, combinations), :mod:`~mlsel.tuning.cv` (folds, features, CV tasks and
their parallel run), :mod:`~mlsel.tuning.choice` (aggregation, choice, heatmap,
operating points, tuned_params.yaml), :mod:`~mlsel.tuning.final` (the test-split
evaluation, frontier and AIQ) and :mod:`~mlsel.tuning.stage` (the wiring).

:func:`tune_selectors` is the tune stage (notebook ``40_tune_selectors``):

1. **Cross-validation, training split only.** The training queries of each
   pool are split K-fold by query (:func:`mlsel.data.outcomes.kfold_queries`, stratified
   by category, or grouped by task under ``split: by_task``), repeated over seeds ``seed, seed + 1, ...``. Every parameter
   combination of a named grid (:data:`GRIDS`) is fitted on the K-1 folds and
   scored on the held-out fold. Tasks run in parallel with joblib behind a
   tqdm progress bar. The test split is not read here at all.
2. **Choice.** Per pool and selector, the combination with the highest mean
   CV utility (the user's ``quality_weight``; quality where no latency was
   measured) wins; ties go to the first in grid order. For every router the
   *matched operating point* is also chosen on CV: the point of the sweep with
   the cheapest CV cost (ties: the larger cost weight) whose CV quality is at
   least ``tune_match_quality_ratio`` times the best single model's CV quality
   (the best single model is the one with the highest mean training utility;
   its CV quality is scored on the same folds as the routers, fold means).
   Across candidates, the one-standard-error rule (:mod:`mlsel.metrics.one_se`)
   on the same folds chooses the headline router among the best single model,
   the per-category lookup and every tuned selector and router, and the
   CostSave@B and matched operating points among the best single model, the
   lookup and each router's matched point (on the per-fold cost).
3. **Final evaluation, the only use of the test split.** Each tuned selector
   is refitted on the whole training split and evaluated on the test split
   with :func:`mlsel.metrics.evaluate.evaluate` beside the exact baselines (oracle,
   best single chosen on train, always-X, expected random). Routers are also
   swept over ``tune_cost_lambdas`` on the test queries (a fixed list, not
   tuned) to draw their cost-quality curves and compute AIQ against the zero
   router (:mod:`mlsel.metrics.frontier`).

Outputs (fixed names)
---------------------
``<run_dir>/tune/cv_results.csv``
    One row per pool x selector x parameter combination: ``pool, selector,
    combo, params`` (compact ``key=value; ...``), one column per tuned key
    (``embedder, onehot_weight, quality_weight, knn_k, ...``; empty where the
    selector does not read it), ``n_fits`` (folds x seeds), ``cv_quality_mean,
    cv_quality_std, cv_utility_mean, cv_utility_std`` (std over the folds and
    seeds), ``cv_avg_<unit>`` for each cost unit (mean cost of the chosen
    answers in the pool's unit; the others are empty), ``cpu_seconds`` (CPU time of its fits
    and predictions summed over folds; a fit shared by combinations that differ
    only in prediction-time parameters is counted once, in the first),
    ``chosen`` (bool).
``<run_dir>/tune/cv_frontier.csv``
    Routers only, their chosen combination: ``pool, router, cost_lambda,
    cv_quality_mean, cv_avg_<unit>`` (one column per cost unit).
``<run_dir>/tune/cv_folds.csv``
    ``pool, query_id, cv_seed, fold``: which training query was in which
    validation fold (every id is a training-split query).
``<run_dir>/tune/cv_fold_scores.csv``
    ``pool, selector, combo, cv_seed, fold, quality, utility, cost``: every CV
    fit's scores on its validation fold, and the static candidates' on the same
    folds (``selector`` ``best_single`` and ``category_lookup``, fitted on each
    fold's training part): what every one-standard-error choice reads.
``<run_dir>/tune/models/<pool>/``
    The tuned KNN, KMeans and SVM refitted on the whole training split
    (:func:`mlsel.selection.registry.save_selector`): what the ship stage exports.
``<run_dir>/tune/tuned_params.yaml``
    params.yaml-shaped: ``train:`` (one set of core-selector values for all
    pools, see :func:`mlsel.tuning.choice.shared_choice`), ``tune:`` (router values), and
    ``pools:`` (per pool and selector: the chosen values with their CV scores,
    plus ``operating_points``). The user's params.yaml is never written.
``<run_dir>/tables/tuned_results.csv``
    The columns of ``selection_results.csv`` (:func:`mlsel.metrics.evaluate.evaluate`);
    strategies ``"<NAME> (tuned)"`` and, for routers, ``"<NAME> (tuned,
    matched lambda=<x>)"``, beside the baselines.
``<run_dir>/tables/frontier.csv``
    ``pool, kind, router, cost_lambda, avg_quality, avg_<unit>`` (one column
    per cost unit) on the test queries; ``kind`` is ``router`` (one row
    per cost weight), ``selector`` (tuned core selectors, one point),
    ``single`` (always one model) or ``zero_router`` (the hull vertices of the
    single models); ``cost_lambda`` is empty for non-routers.
``<run_dir>/tables/aiq.csv``
    :func:`mlsel.metrics.frontier.aiq_table` per pool plus ``cost_unit``
    (the pool's cost unit): ``pool, router, n_points, aiq,
    ci_low, ci_high, aiq_minus_zero_router (+ _ci_low, _ci_high),
    cost_to_match_best_single, best_single_quality, cost_min, cost_max``.
``<run_dir>/tables/tune_heatmap.csv``
    Heatmap data, CV only: ``pool, selector, param, param_value,
    onehot_weight, cv_quality_mean, cv_quality_std, cv_utility_mean``: for
    each selector's main parameter (:data:`HEATMAP_PARAM`, e.g. ``knn_k``) x
    the category one-hot weight, the best CV score over the remaining
    parameters.
``<run_dir>/tables/summary.csv``
    Does routing pay on this data: one row per pool (:mod:`mlsel.tuning.summary`):
    Gain@B, Gap@O, CostSave@B, the matched point and AIQ minus the zero
    router, with paired 95% CIs, every choice made on CV.
``<run_dir>/tables/choice.csv``
    The one-standard-error rule's table of the headline router: ``pool, rule``
    (``headline``), ``candidate, label, order, n_folds, cv_mean, diff_to_best,
    se, within_one_se, argmax, chosen``.
``<run_dir>/tables/choice_cost.csv``
    The same for the operating points (``rule`` ``at_best`` or ``matched``) in
    cost terms: ``cv_cost_mean, cost_over_cheapest, cost_se`` in the pool's
    cost unit.
``<run_dir>/tables/latency_prediction.csv``
    Only where the pool's cost axis is ``latency_s`` and the prepare stage wrote
    the same requests timed again (``data/latency_replicate.csv``): per tuned
    router that predicts a per-query latency, how much of the variance of log
    latency it predicts in the test split and in the other run, beside the
    model's training mean (:func:`mlsel.metrics.latency.latency_prediction`).

Cost is the pool's cost axis (:data:`mlsel.data.costs.COST_UNITS`, in this
order: ``cost_usd``, ``latency_s``, the proxies ``response_chars`` and
``list_price``); with none, frontier and AIQ tables are empty.
"""

from mlsel.tuning.choice import heatmap_table, operating_points, shared_choice, tuned_params_doc
from mlsel.tuning.cv import FeatureCache, PoolData, TunePlan, build_cv_tasks, cv_task, load_pools, run_cv_tasks
from mlsel.tuning.final import final_tables, fit_final
from mlsel.tuning.grids import CORE_KEYS, FEATURE_KEYS, GRIDS, HEATMAP_PARAM, combo_params, params_text, selector_grid
from mlsel.tuning.stage import tune_plan, tune_selectors

__all__ = [
    "CORE_KEYS", "FEATURE_KEYS", "GRIDS", "HEATMAP_PARAM", "FeatureCache", "PoolData", "TunePlan", "build_cv_tasks", "combo_params",
    "cv_task", "final_tables", "fit_final", "heatmap_table", "load_pools", "operating_points", "params_text", "run_cv_tasks",
    "selector_grid", "shared_choice", "tune_plan", "tune_selectors", "tuned_params_doc",
]
