"""The page's glossary: every name and metric the tables use, defined once, each a link target (``#gloss-<term>``).

The answer table's headers link here (:mod:`mlsel.report.answer`). What
"quality" means depends on the data source: a dataset's entry comes from the
source its prepare stage recorded in the manifest (:data:`SOURCE_QUALITY`).
"""

from __future__ import annotations

from mlsel.metrics.one_se import RULE_TEXT
from mlsel.report.blocks import Glossary, Section, Text

DECISIONS = [
    ("gloss-do-this", "Do this", "What the ship stage deploys for the pool (each dataset's \"What to ship\"), chosen on CV by the "
     "one-standard-error rule among what the router runtime can run: \"Use M\", always the best single model M; \"Use the "
     "per-category lookup\", static decisions, no ML; \"Route with R\", one decision running KNN, KMeans or SVM R with its tuned "
     "parameters. The held-out gains beside it say whether the held-out queries confirm the choice; where a run has no ship "
     "stage, it is read from the held-out intervals (the router beats both baselines: route; the lookup or the router beats "
     "the best single model only: the lookup; else the best single model)."),
    ("gloss-one-se", "Router chosen on CV; one-standard-error rule", f"Every choice is made on the cross-validation inside the "
     f"training split, never on the held-out queries: {RULE_TEXT}. It can choose the best single model or the lookup itself. "
     "The CV arg-max (the plain highest mean CV utility) is in the full matrix beside it. \"(tuned)\": the router's parameters "
     "were chosen by the same CV."),
]
ROUTERS = [
    ("gloss-guarded", "GUARDED", "The guarded router: the per-category lookup, left only where the query's nearest training "
     "queries show, by enough standard errors of their paired differences, that another model is better."),
    ("gloss-scoreboard", "SCOREBOARD", "Avengers-Pro's cluster scoreboard: k-means clusters of the training queries, each "
     "model's mean quality and cost per cluster; a query goes to the best model of its nearest clusters."),
    ("gloss-knn-reg", "KNN_REG", "RouterBench-style KNN regression: each model's quality and cost are the means over the "
     "query's nearest training queries, shrunk toward the model's overall mean; the highest quality minus cost_lambda x cost wins."),
    ("gloss-logreg", "LOGREG", "One logistic regression per model predicts its chance of a correct answer (cost from a ridge "
     "regression); the highest prediction minus cost_lambda x cost wins."),
    ("gloss-mlp", "MLP", "A small neural network (scikit-learn's MLPRegressor) predicts every model's quality (cost from a ridge "
     "regression); the highest prediction minus cost_lambda x cost wins."),
    ("gloss-knn", "KNN", "The reference's KNN selector: each model's score is its mean utility over the query's k nearest "
     "training queries."),
    ("gloss-kmeans", "KMEANS", "The reference's KMeans selector: the training queries in clusters, each cluster routed to its "
     "best mean-utility model."),
    ("gloss-svm", "SVM", "The reference's SVM selector: one-vs-rest support vector machines trained on each training query's "
     "best model."),
    ("gloss-peer", "Best peer", "The peers' published routers (RouterBench's KNN and MLP, LLMRouter's KNN, SVM, MLP and MF, "
     "EmbedLLM's MF, Avengers-Pro, HierShrink) fitted with their sources' settings on the same split; the best of them on "
     "the held-out queries, so the strongest competitor. Best peer − best single: its paired gain over the best single model."),
]
BASELINES = [
    ("gloss-best-single", "Best single model", "The one model with the best mean quality on the training split, used for "
     "every query."),
    ("gloss-lookup", "Per-category lookup; router − lookup", "Static routing, no ML: each category sent to the model with the "
     "best training mean (a category with too few training queries keeps the best single model). Router − lookup: the chosen "
     "router's held-out quality minus the lookup's, with its 95% CI."),
    ("gloss-oracle", "Oracle", "The best model for each query, chosen knowing the answers: the ceiling no router reaches."),
    ("gloss-random", "Random", "The expected quality of a uniformly random model per query (the mean over the pool), not one draw."),
    ("gloss-zero-router", "Zero router", "The best quality reachable at each cost by randomly mixing single models, with no "
     "per-query information (the single models' upper hull)."),
]
METRICS = [
    ("gloss-gain-at-b", "Gain@B; router − best single", "The chosen router's held-out quality minus the best single model's "
     "(both chosen on the training split), with its 95% CI."),
    ("gloss-gap-at-o", "Gap@O", "The share of the best single → oracle gap the router closes: 100 x Gain@B / (oracle − best "
     "single). \"Random → oracle closed\" is the same share from random."),
    ("gloss-cost-save-at-b", "CostSave@B", "The cost saved, 100 x (1 − cost / best single model's cost), at the operating point "
     "chosen on CV to keep at least the best single model's quality: the one-standard-error rule on the per-fold cost among the "
     "best single model, the lookup and each router's cheapest point reaching that quality."),
    ("gloss-matched", "Matched point; cost saved at matched quality", "The point chosen the same way to keep "
     "tune_match_quality_ratio of the best single model's quality (97% for RouterBench, as its benchmarks report; 98% "
     "elsewhere). The answer table gives the cost it saves (100 − its cost as a % of the best single model's) and the share "
     "of the quality it keeps, both held out."),
    ("gloss-aiq", "AIQ; AIQ − zero router", "The average quality over the budget range (the single models' cheapest to most "
     "expensive) under a router's cost-quality hull as its cost weight varies; minus the zero router's."),
    ("gloss-verdict", "ML or static routing?", "\"ML routing beats static routing\" when the router beats both the best single "
     "model and the lookup; \"static routing is enough\" when the router or the lookup beats the best single model but the "
     "router does not beat the lookup; else \"neither beats the best single model\"."),
    ("gloss-ci", "95% CI", "A 95% paired bootstrap interval over the held-out queries (the same draws for every quantity of a "
     "row); a difference counts only when its whole interval is on one side of 0."),
]
COSTS = [
    ("gloss-cost", "Cost unit", "What a pool's cost is: the first its data has of USD, seconds, answer length, list price. A "
     "proxy is named as such, never shown as USD or seconds."),
    ("gloss-cost-usd", "USD per query", "A real cost in US dollars (RouterBench: the source's per-query cost; BFCL: its token "
     "counts times its price table)."),
    ("gloss-cost-latency", "Seconds of latency", "Measured wall-clock latency of the chosen answers (BFCL's client side)."),
    ("gloss-cost-price", "List price (proxy)", "The chosen model's list price per 1M tokens, equal token counts assumed: not a "
     "cost per query."),
    ("gloss-cost-chars", "Answer length (proxy)", "The chosen answer's length in characters: neither a price nor a time."),
]
SPLITS = [
    ("gloss-split-seeded", "Split seeded", "Queries held out at random (seeded), stratified by category: 20% held out."),
    ("gloss-split-by-task", "Split by_task", "Whole tasks held out: no query of a held-out task is trained on (LLMRouter, "
     "unseen tasks: gpqa, human_eval, commonsense_qa and agentverse-mgsm)."),
    ("gloss-split-source", "Split source", "The source's own train and test files (RouterBench as re-split by RouterDC)."),
]
SOURCE_QUALITY = {
    "mmlu_pro": "1 if the answer the model's output gives equals the answer key, else 0 (no extracted answer counts 0).",
    "llmrouter": "the source's score in [0, 1] (each task's own metric).",
    "routerbench": "the source's 0/1 correctness.",
    "bfcl": "1 unless the prompt is listed as failed in the model's BFCL score file.",
    "seed_jsonl": "the record's performance score.",
    "benchmark": "this suite's score of the model's answer (failed calls are dropped and counted, never scored 0).",
}
"""What quality means, per data source (``prepare.source``)."""


def quality_entries(sources: dict[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
    """One entry per dataset, ``sources`` mapping a dataset to (its title, its data source)."""
    return [(f"gloss-quality-{ds}", f"Quality: {title}", SOURCE_QUALITY.get(source, f"as its source ({source or 'unknown'}) scores it."))
            for ds, (title, source) in sources.items()]


def glossary_section(sources: dict[str, tuple[str, str]]) -> Section:
    """The glossary: what to do, the routers, the baselines, the metrics, the cost units, the splits and each dataset's quality."""
    sec = Section("glossary", "Glossary")
    for heading, entries in (("What to do and how it is chosen", DECISIONS), ("Routers and selectors", ROUTERS),
                             ("Baselines", BASELINES), ("Metrics", METRICS), ("Cost units and proxies", COSTS), ("Splits", SPLITS),
                             ("Quality, per dataset", quality_entries(sources))):
        sec.blocks += [Text(heading=heading), Glossary(entries)]
    return sec
