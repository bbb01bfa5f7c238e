"""What the router embeds on BFCL: the request with the tools offered (as shipped) or the request alone, measured.

Prepares the ``bfcl`` dataset (pool api8, its seeded split) as the prepare
stage does (:func:`mlsel.stages.prepare_data`, into a temporary run folder).
The two text variants are the same queries (query ids, categories, split,
outcomes): only the text embedded differs. ``request + tools`` is the shipped
query text (:func:`mlsel.data.bfcl.request_text`); ``request only`` is the
same BFCL prompt's request without its tools (``tools=False``), matched to the
query by the BFCL prompt id, since a query's id is the hash of its shipped text.

For each variant, each default selector (KNN, KMeans, SVM with the train
stage's parameters, on the default embedder's features plus the category
one-hot) at ``quality_weight`` 1.0 and at the dataset's default:

- CV: 5-fold by query inside the training split (stratified by category,
  :func:`mlsel.data.outcomes.kfold_queries`), each training query scored by
  the selector fitted on the other folds; the choice is made here;
- held-out: fitted on the training split, scored on the test queries.

Quality is the mean correctness of the chosen model. Differences (request +
tools minus request only) are paired by query, with a 95% paired bootstrap CI
(:func:`mlsel.metrics.bootstrap.paired_difference`; the evaluate stage's
``n_bootstrap`` and seed). The conclusion is computed from the CV rows: the
tools are embedded if they help, the request alone if the tools hurt; if no CV
interval excludes 0 the text that keeps more requests distinct is kept.

Writes benchmarks/results/embed_text.json and embed_text.md (the README
quotes the table). Run:

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embed_text.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from mlsel import stages
from mlsel.data.bfcl import BFCL_CATEGORIES, BfclFiles, question_path, read_questions
from mlsel.data.outcomes import OutcomeMatrix, kfold_queries, load_prepared, pool_matrix, split_masks
from mlsel.data.records import DataLog, query_id
from mlsel.features import EmbedSettings, features_for
from mlsel.metrics.bootstrap import paired_difference
from mlsel.params import apply_overrides, dataset_params, load_params, stage_params
from mlsel.paths import data_dir
from mlsel.selection.registry import label, make_selector

OUT = Path(__file__).resolve().parent / "results"
DATASET = "bfcl"
VARIANTS = ("request + tools", "request only")
N_FOLDS = 5


def request_only_texts(mirror: Path | None) -> dict[str, str]:
    """Per query id (the hash of the shipped text of a BFCL prompt), the same prompt's request without its tools."""
    files = BfclFiles(mirror, DataLog())
    questions = files.get("question", [question_path(c) for c in BFCL_CATEGORIES])
    out = {}
    for cat in BFCL_CATEGORIES:
        data, where = questions[question_path(cat)], files.where("question", question_path(cat))
        ids, shipped = read_questions(data, where)
        bare_ids, bare = read_questions(data, where, tools=False)
        assert ids == bare_ids, where
        out.update({query_id(text): b for text, b in zip(shipped, bare)})
    return out


def distinct(texts: np.ndarray) -> dict[str, int]:
    """How many texts, distinct texts, and texts another query shares."""
    _, inverse, counts = np.unique(texts, return_inverse=True, return_counts=True)
    return {"n_texts": int(len(texts)), "n_distinct": int(len(counts)), "n_shared": int((counts[inverse] > 1).sum())}


def chosen_quality(sel, Xtr: np.ndarray, tr: OutcomeMatrix, Xte: np.ndarray, te: OutcomeMatrix) -> np.ndarray:
    """Per query of ``te``: the quality of the model the selector fitted on ``tr`` chooses (its choice probabilities)."""
    sel.fit(Xtr, tr.quality, tr.latency_s, models=list(tr.models))
    return (sel.predict_proba(Xte) * te.quality).sum(axis=1)


def scores(tp, names: list[str], weights: list[float], X: np.ndarray, m: OutcomeMatrix, train: np.ndarray, test: np.ndarray,
           folds: list[tuple[np.ndarray, np.ndarray]]) -> dict[tuple[str, float], dict[str, np.ndarray]]:
    """Per (selector, weight): CV quality per training query and held-out quality per test query."""
    tr_idx, te_idx = np.flatnonzero(train), np.flatnonzero(test)
    out = {}
    for name in names:
        for w in weights:
            cv = np.empty(len(tr_idx))
            for fit_rows, valid_rows in folds:
                a, b = tr_idx[fit_rows], tr_idx[valid_rows]
                cv[valid_rows] = chosen_quality(make_selector(name, tp).set_params(quality_weight=w), X[a], m.subset(a), X[b], m.subset(b))
            held = chosen_quality(make_selector(name, tp).set_params(quality_weight=w), X[tr_idx], m.subset(tr_idx), X[te_idx],
                                  m.subset(te_idx))
            out[name, w] = {"cv": cv, "test": held}
    return out


def rows(per_variant: dict[str, dict], n_bootstrap: int, seed: int) -> list[dict]:
    """Per (selector, weight): each variant's CV and held-out quality, and the paired differences with their CIs."""
    shipped, bare = (per_variant[v] for v in VARIANTS)
    out = []
    for (name, w), a in shipped.items():
        b = bare[name, w]
        row = {"selector": label(name), "quality_weight": w}
        for part in ("cv", "test"):
            d, lo, hi = paired_difference(a[part], b[part], n_bootstrap, seed)
            row |= {f"{part}_tools": float(a[part].mean()), f"{part}_request": float(b[part].mean()),
                    f"{part}_diff": d, f"{part}_diff_ci_low": lo, f"{part}_diff_ci_high": hi}
        out.append(row)
    return out


def conclusion(result: dict) -> str:
    """The choice the CV rows make, with the held-out rows beside it (computed, never written by hand)."""
    rs, texts, n_test = result["rows"], result["texts"], result["n_test"]
    helps = [r for r in rs if r["cv_diff_ci_low"] > 0]
    hurts = [r for r in rs if r["cv_diff_ci_high"] < 0]
    worst = max(rs, key=lambda r: abs(r["test_diff"]))
    held = (f"held out, the largest difference is {worst['test_diff']:+.4f} ({worst['selector']} at {worst['quality_weight']:g}, "
            f"{abs(worst['test_diff']) * n_test:.0f} of {n_test} queries)")
    if helps and not hurts:
        return f"On CV the tools raise quality for {len(helps)} of {len(rs)} selector settings and lower it for none; {held}: embed the request with its tools."
    if hurts and not helps:
        return f"On CV the tools lower quality for {len(hurts)} of {len(rs)} selector settings and raise it for none; {held}: embed the request alone."
    if helps and hurts:
        return f"On CV the tools raise quality for {len(helps)} and lower it for {len(hurts)} of {len(rs)} selector settings; {held}: no text is better for every selector."
    largest = max(abs(r["cv_diff"]) for r in rs)
    keep, other = sorted(VARIANTS, key=lambda v: -texts[v]["n_distinct"])
    return (f"On CV no selector setting's quality differs measurably between the two texts (every 95% CI includes 0; the largest "
            f"difference is {largest:.4f}); {held}. The tools neither help nor hurt, so the text that tells more requests apart stays: "
            f"{keep} ({texts[keep]['n_distinct']} distinct texts of {texts[keep]['n_texts']}, {other} {texts[other]['n_distinct']}).")


def _ci(v: float, lo: float, hi: float) -> str:
    return f"{v:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def markdown(result: dict) -> str:
    """The results file: the setting, the distinct texts, the table and the conclusion."""
    t = result["texts"]
    lines = [f"BFCL {result['pool']} ({result['n_train']} training, {result['n_test']} held-out requests; {result['embedder']} + category "
             f"one-hot; CV: {result['n_folds']}-fold inside the training split). Distinct texts: "
             + "; ".join(f"{v} {t[v]['n_distinct']} of {t[v]['n_texts']} ({t[v]['n_shared']} share their text with another request)"
                         for v in VARIANTS) + ".", "",
             "| selector | quality_weight | CV: request + tools | CV: request only | CV difference | held out: request + tools "
             "| held out: request only | held-out difference |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['selector']} | {r['quality_weight']:g} | {r['cv_tools']:.4f} | {r['cv_request']:.4f} | "
                     f"{_ci(r['cv_diff'], r['cv_diff_ci_low'], r['cv_diff_ci_high'])} | {r['test_tools']:.4f} | {r['test_request']:.4f} | "
                     f"{_ci(r['test_diff'], r['test_diff_ci_low'], r['test_diff_ci_high'])} |")
    lines += ["", "Quality is the chosen model's mean correctness; below quality_weight 1 the selectors also weigh latency "
              "(w x quality + (1 - w) / (1 + latency_s)). Differences: request + tools minus request only, paired by query, "
              f"95% paired bootstrap CI. {result['conclusion']}"]
    return "\n".join(lines) + "\n"


def measure(run_dir: str) -> dict:
    params = dataset_params(apply_overrides(load_params(), {"run_dir": run_dir}), DATASET)
    pp = stage_params(params, "prepare")
    stages.prepare_data(pp)
    tp, ep = stage_params(params, "train"), stage_params(params, "evaluate")
    queries, outcomes = load_prepared(tp.run_dir)
    (pool, models), = tp.pools.items()
    m = pool_matrix(queries, outcomes, models)
    train, test = split_masks(queries, m)
    bare = request_only_texts(data_dir(pp.data_dir))
    matrices = {VARIANTS[0]: m, VARIANTS[1]: replace(m, queries=np.array([bare[q] for q in m.query_ids]))}
    folds = kfold_queries(m.query_ids[train], m.categories[train], N_FOLDS, tp.seed)
    weights = sorted({1.0, tp.quality_weight}, reverse=True)
    per_variant = {v: scores(tp, list(tp.selector_names), weights, features_for(mv, tp.embedder, tp.onehot_weight,
                                                                                EmbedSettings.from_params(tp)), m, train, test, folds)
                   for v, mv in matrices.items()}
    result = {"dataset": DATASET, "pool": pool, "n_train": int(train.sum()), "n_test": int(test.sum()), "embedder": tp.embedder,
              "n_folds": N_FOLDS, "texts": {v: distinct(mv.queries) for v, mv in matrices.items()},
              "rows": rows(per_variant, ep.n_bootstrap, ep.seed)}
    result["conclusion"] = conclusion(result)
    return result


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory() as run_dir:
        result = measure(run_dir)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "embed_text.json").write_text(json.dumps(result, indent=1) + "\n")
    (OUT / "embed_text.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
