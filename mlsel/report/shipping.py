"""The report's sections on choosing and shipping: the one-standard-error rule's tables, what is shipped per pool, and the
reference parameters' model files."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlsel.metrics.one_se import RULE_TEXT
from mlsel.report.blocks import Section, Text
from mlsel.report.figures import ship_figure
from mlsel.report.tables import UNIT_NAMES, export_sentences, fmt_ci, fmt_generic, fmt_num, generic_table


def ship_sentence(r: Any) -> str:
    """A ship.csv row's verdict with its held-out gains and their 95% CIs."""
    def ci(col: str) -> str:
        return fmt_ci(getattr(r, col), getattr(r, col + "_ci_low"), getattr(r, col + "_ci_high"), 3, True)

    return (f"{r.verdict} Held out: {ci('gain_vs_best_single')} against always {r.best_single}, {ci('gain_vs_lookup')} against the "
            f"lookup; runtime agreement {r.runtime_agreement:.4f}.")


def choice_section(choice: pd.DataFrame, cost: pd.DataFrame | None = None) -> Section:
    """How the headline router and the operating points were chosen: the one-standard-error rule's tables per pool."""
    sec = Section("choice", "How the router was chosen: the one-standard-error rule on CV")
    sec.blocks.append(Text(text=(
        f"Every choice of the headline row is made on the cross-validation inside the training split with one rule: {RULE_TEXT}. "
        "within_one_se: the candidate's mean paired difference to the CV-best is at least minus its standard error; argmax marks "
        "the plain highest CV mean, chosen the rule's choice. The operating points (at_best: keeping the best single model's CV "
        "quality; matched: keeping the matched share of it) are chosen the same way on the per-fold cost, among the best single "
        "model, the lookup and each router's cheapest point reaching the target."), shared="The one-standard-error rule"))
    sec.blocks.append(generic_table(choice.drop(columns=["order"], errors="ignore"), "table-choice",
                                    "The headline router: the rule's table per pool (CV utility).", link="tables/choice.csv", max_rows=60))
    if cost is not None and len(cost):
        sec.blocks.append(generic_table(cost, "table-choice-cost", "The operating points: the rule's table per pool (CV cost).",
                                        link="tables/choice_cost.csv", max_rows=60))
    return sec


def ship_frame(ship: pd.DataFrame) -> pd.DataFrame:
    """``ship.csv`` for people: the gains as ``value [low, high]``, the cost with its unit named (a proxy as such)."""
    def ci(col: str) -> list[str]:
        return [fmt_ci(*v, 3, True) for v in zip(ship[col], ship[f"{col}_ci_low"], ship[f"{col}_ci_high"])]

    out = pd.DataFrame({"Pool": ship["pool"], "Shipped": ship["label"], "Held-out quality": ship["quality"].map(fmt_num),
                        "vs best single [95% CI]": ci("gain_vs_best_single"), "vs lookup [95% CI]": ci("gain_vs_lookup")})
    if "cost" in ship:
        out["Cost"] = [fmt_generic(c) for c in ship["cost"]]
        out["Cost unit"] = [UNIT_NAMES.get(u, str(u)) if isinstance(u, str) else UNIT_NAMES[""] for u in ship["cost_unit"]]
        out["Zero router's quality at that cost"] = ship["zero_router_quality"].map(fmt_num)
    for col, name in (("runtime_agreement", "Runtime agreement"), ("files", "Files"), ("not_runnable", "Not runnable")):
        if col in ship:
            out[name] = [fmt_generic(v) for v in ship[col]]
    return out


def ship_section(ship: pd.DataFrame) -> Section:
    """What to ship per pool (``ship.csv``): the verdicts, the table of gains and the figure."""
    sec = Section("ship", "What to ship: the routing config chosen on CV, with its tuned model file")
    sec.blocks.append(Text(text=(
        "Among what the router runtime can run (the best single model, the per-category lookup, one decision with KNN, KMeans or "
        f"SVM at the parameters CV chose), the same rule picks the config: {RULE_TEXT}. It is written to ship/<pool>/ with its "
        "model file, routed on the held-out queries (runtime agreement: the share of queries where the written config, and the "
        "runtime's rule on the written file, give the evaluated choice) and scored against the best single model and the lookup "
        "(95% paired bootstrap intervals) and the zero router (the single models' hull) at the same cost."), shared="What is shipped"))
    sec.blocks.append(Text(items=[f"Pool {r.pool}: {ship_sentence(r)}" for r in ship.itertuples(index=False)]))
    sec.blocks.append(generic_table(ship_frame(ship), "table-ship", "What is shipped per pool, on the held-out queries.",
                                    link="tables/ship.csv"))
    sec.blocks.append(ship_figure(ship))
    return sec


def export_section(ex: pd.DataFrame) -> Section:
    """The train stage's selectors (the reference's parameters) as router model files: their runtime-rule quality on held-out
    queries beside the Python selector's. What is shipped is :func:`ship_section`'s."""
    blocks: list[Any] = [Text(text=t) for t in export_sentences(ex)]
    blocks.append(generic_table(ex, "table-router-export", "Exported router model files: size, agreement with the Python selector and mean "
                                "quality of each one's choices on the held-out queries (runtime rule applied to the file as written).",
                                link="tables/router_export.csv"))
    return Section("router-export", "The reference parameters as router model files (not what is shipped)", blocks)
