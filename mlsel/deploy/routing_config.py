"""The router's per-decision routing config: its model, parsing with clear errors, routing a query to a decision.

Config shape
------------
The reference's ``config.yaml``::

    model_selection: {ml: {enabled: true, models_path: ..., knn: {k: 5}, ...}}   # optional
    default_decision: general_decision          # optional, mlsel's own key (see below)
    decisions:
      - name: math_decision
        priority: 100
        rules: {operator: AND, conditions: [{type: domain, name: math}]}
        algorithm: {type: knn, knn: {k: 5}}
        modelRefs: [{model: Phi-3-mini-4k-instruct}, ...]

A decision with exactly one modelRef may leave ``algorithm`` out (or say
``type: static``): static routing, always that model. :func:`static_config`
writes a per-category lookup learned on training data in this form.

``routing.decisions`` and ``global.router.model_selection.ml`` are accepted
as the nested variants. Algorithm parameters: the decision's own block wins,
then the ``ml`` block's (``ml.knn.k`` ...), then the defaults of the
parameter model (:data:`DEFAULT_ALGORITHM_PARAMS`, the reference's: k=5,
num_clusters=8, kernel=rbf, gamma=1.0, C=1.0). ``operator`` defaults to
``AND``. Only ``domain`` conditions can be evaluated offline (the query's
category is known; keywords, embeddings etc. are not).

Routing rule (offline): a held-out query goes to the highest-priority
decision whose rule matches its category. Two decisions that can match the
same category at the same priority are an error (the router's order between
them is not a documented contract). Queries no decision matches go to the
decision named by the top-level ``default_decision`` if given; otherwise to
the best single model on the training split among all of the run's models.
Their count is reported.

Offline evaluation of a config: :mod:`mlsel.deploy.evaluate_config`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mlsel import CATEGORIES
from mlsel.files import read_yaml
from mlsel.params import TrainParams, default
from mlsel.paths import resolve_path

log = logging.getLogger(__name__)

ALGORITHMS: tuple[str, ...] = ("knn", "kmeans", "svm")
"""The algorithm types a config may name (the reference's three selectors)."""

STATIC = "static"
"""The algorithm of a decision with one modelRef and no ``algorithm`` block (or ``type: static``): it always routes to that model."""

CONFIG_KEYS: dict[str, dict[str, str]] = {
    "knn": {"k": "knn_k"},
    "kmeans": {"num_clusters": "kmeans_num_clusters"},
    "svm": {"kernel": "svm_kernel", "gamma": "svm_gamma", "c": "svm_c"},
}
"""Per algorithm: the config's parameter name -> the parameter model's key."""

DEFAULT_ALGORITHM_PARAMS: dict[str, dict[str, Any]] = {
    algo: {key: default(TrainParams, pkey) for key, pkey in keys.items()} for algo, keys in CONFIG_KEYS.items()
}
"""The defaults per algorithm type, from the parameter model (the reference's documented defaults)."""

class RouterConfigError(ValueError):
    """A router config is malformed; the message names the file and the decision."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Decision:
    """One routing decision of a router config.

    ``categories`` are the categories its rule matches; ``params`` the
    resolved algorithm parameters (``k``; ``num_clusters``; ``kernel``,
    ``gamma``, ``c``).
    """

    name: str
    priority: int
    categories: tuple[str, ...]
    algorithm: str
    params: tuple[tuple[str, Any], ...]
    model_refs: tuple[str, ...]
    description: str = ""

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def params_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params)


@dataclass
class RouterConfig:
    """A parsed, validated router config."""

    path: str
    decisions: list[Decision]
    default_decision: str | None = None
    ml: dict[str, Any] = field(default_factory=dict)

    def decision(self, name: str) -> Decision:
        for d in self.decisions:
            if d.name == name:
                return d
        raise KeyError(name)

    def route(self, category: str) -> Decision | None:
        """The highest-priority decision whose rule matches ``category`` (None: no match)."""
        matching = [d for d in self.decisions if category in d.categories]
        if not matching:
            return None
        return max(matching, key=lambda d: d.priority)

    def routing_table(self) -> dict[str, str | None]:
        """Category -> decision name (None where nothing matches), in :data:`mlsel.CATEGORIES` order."""
        out = {}
        for c in CATEGORIES:
            d = self.route(c)
            out[c] = d.name if d else None
        return out

    def check_models(self, models: Sequence[str], where: str = "the run's data") -> None:
        """Every modelRef must be one of ``models``; otherwise an error naming the decision."""
        for d in self.decisions:
            missing = [m for m in d.model_refs if m not in models]
            if missing:
                raise RouterConfigError(
                    f"{self.path}: decision {d.name!r}: modelRefs {missing} are not in {where}; available: {list(models)}"
                )


def _positive_int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RouterConfigError(f"{where}: {what} must be a positive integer, got {value!r}")
    return value


def _algorithm_params(algo: str, block: dict[str, Any], ml: dict[str, Any], where: str) -> dict[str, Any]:
    merged = dict(DEFAULT_ALGORITHM_PARAMS[algo])
    for source in (ml.get(algo) or {}, block.get(algo) or {}):
        if not isinstance(source, dict):
            raise RouterConfigError(f"{where}: algorithm.{algo} must be a mapping, got {source!r}")
        merged.update({str(k).lower(): v for k, v in source.items()})
    # ml.knn may also carry runtime-only keys (pretrained_path ...), which do not change selection.
    merged = {k: v for k, v in merged.items() if k in CONFIG_KEYS[algo]}
    if algo == "knn":
        merged["k"] = _positive_int(merged["k"], "knn.k", where)
    elif algo == "kmeans":
        merged["num_clusters"] = _positive_int(merged["num_clusters"], "kmeans.num_clusters", where)
    else:
        kernel = str(merged["kernel"]).lower()
        if kernel not in ("rbf", "linear"):
            raise RouterConfigError(f"{where}: svm.kernel must be rbf or linear, got {merged['kernel']!r}")
        merged["kernel"] = kernel
        for key in ("gamma", "c"):
            v = merged[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise RouterConfigError(f"{where}: svm.{key} must be a positive number, got {v!r}")
            merged[key] = float(v)
    return merged


def _parse_rules(rules: Any, where: str) -> tuple[str, ...]:
    """The categories a decision's ``rules`` match, in :data:`mlsel.CATEGORIES` order."""
    if not isinstance(rules, dict) or not isinstance(rules.get("conditions"), list) or not rules["conditions"]:
        raise RouterConfigError(f"{where}: rules must be a mapping with a non-empty 'conditions' list")
    operator = str(rules.get("operator", "AND")).upper()
    if operator not in ("AND", "OR"):
        raise RouterConfigError(f"{where}: rules.operator must be AND or OR, got {rules.get('operator')!r}")
    domains = []
    for j, cond in enumerate(rules["conditions"]):
        if not isinstance(cond, dict) or "type" not in cond or "name" not in cond:
            raise RouterConfigError(f"{where}: rules.conditions[{j}] needs fields 'type' and 'name'")
        if cond["type"] != "domain":
            raise RouterConfigError(
                f"{where}: rules.conditions[{j}] has type {cond['type']!r}; only 'domain' conditions can be evaluated offline"
            )
        if cond["name"] not in CATEGORIES:
            raise RouterConfigError(
                f"{where}: rules.conditions[{j}]: unknown category {cond['name']!r}; expected one of {list(CATEGORIES)}"
            )
        domains.append(cond["name"])
    # A query has exactly one category: AND over two different domains never matches.
    if operator == "AND" and len(set(domains)) > 1:
        raise RouterConfigError(f"{where}: rules AND over different domains {sorted(set(domains))} can never match; use OR")
    return tuple(c for c in CATEGORIES if c in set(domains))


def _parse_model_refs(refs_raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(refs_raw, list) or not refs_raw:
        raise RouterConfigError(f"{where}: modelRefs must be a non-empty list of {{model: <name>}}")
    refs: list[str] = []
    for j, ref in enumerate(refs_raw):
        model = ref.get("model") if isinstance(ref, dict) else None
        if not isinstance(model, str) or not model:
            raise RouterConfigError(f"{where}: modelRefs[{j}]: missing field 'model'")
        if model in refs:
            raise RouterConfigError(f"{where}: modelRefs lists {model!r} twice")
        refs.append(model)
    return tuple(refs)


def _parse_decision(raw: Any, i: int, path: str, ml: dict[str, Any]) -> Decision:
    if not isinstance(raw, dict):
        raise RouterConfigError(f"{path}: decisions[{i}] must be a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RouterConfigError(f"{path}: decisions[{i}]: missing field 'name'")
    where = f"{path}: decision {name!r}"
    for key in ("priority", "rules", "modelRefs"):
        if key not in raw or raw[key] is None:
            raise RouterConfigError(f"{where}: missing field {key!r}")
    priority = raw["priority"]
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RouterConfigError(f"{where}: priority must be an integer, got {priority!r}")
    categories = _parse_rules(raw["rules"], where)
    refs = _parse_model_refs(raw["modelRefs"], where)
    algo_block = raw.get("algorithm")
    if algo_block is None or (isinstance(algo_block, dict) and str(algo_block.get("type", "")).lower() == STATIC):
        if len(refs) != 1:
            raise RouterConfigError(f"{where}: a decision without an ML algorithm (static) needs exactly one modelRef, got {list(refs)}")
        return Decision(name, priority, categories, STATIC, (), refs, str(raw.get("description") or ""))
    if not isinstance(algo_block, dict) or "type" not in algo_block:
        raise RouterConfigError(f"{where}: missing field 'algorithm.type'")
    algo = str(algo_block["type"]).lower()
    if algo not in ALGORITHMS:
        raise RouterConfigError(f"{where}: unknown algorithm type {algo_block['type']!r}; mlsel evaluates {list(ALGORITHMS)} or {STATIC!r}")
    params = _algorithm_params(algo, algo_block, ml, where)
    return Decision(name, priority, categories, algo, tuple(params.items()), refs, str(raw.get("description") or ""))


def _ml_block(raw: dict[str, Any]) -> dict[str, Any]:
    """``model_selection.ml`` (or ``global.router.model_selection.ml``); {} when absent."""
    ml = (raw.get("model_selection") or {}).get("ml") if isinstance(raw.get("model_selection"), dict) else None
    if ml is None:
        glob = raw.get("global")
        if isinstance(glob, dict):
            ml = (((glob.get("router") or {}).get("model_selection")) or {}).get("ml")
    return ml if isinstance(ml, dict) else {}


def _check_decisions(p: Path, decisions: list[Decision]) -> set[str]:
    """Unique names and no overlap at equal priority; returns the names."""
    seen: set[str] = set()
    for d in decisions:
        if d.name in seen:
            raise RouterConfigError(f"{p}: decision {d.name!r} is defined twice")
        seen.add(d.name)
    for i, a in enumerate(decisions):
        for b in decisions[i + 1:]:
            shared = [c for c in a.categories if c in b.categories]
            if shared and a.priority == b.priority:
                raise RouterConfigError(
                    f"{p}: decisions {a.name!r} and {b.name!r} overlap at equal priority {a.priority}: "
                    f"both match {shared}; give one a different priority or remove the overlap"
                )
    return seen


def load_router_config(path: str | os.PathLike[str], models: Sequence[str] | None = None) -> RouterConfig:
    """Read and validate a router config; with ``models``, also check every modelRef exists.

    Raises
    ------
    RouterConfigError
        naming the file and the decision: missing fields, unknown algorithm
        type, unknown category, modelRefs absent from ``models``, two
        decisions matching one category at the same priority, unknown
        ``default_decision``.
    """
    p = resolve_path(path)
    raw = read_yaml(p, "the router config", RouterConfigError)
    if not isinstance(raw, dict):
        raise RouterConfigError(f"{p}: expected a mapping at the top level")
    decisions_raw = raw.get("decisions")
    if decisions_raw is None and isinstance(raw.get("routing"), dict):
        decisions_raw = raw["routing"].get("decisions")
    if not isinstance(decisions_raw, list) or not decisions_raw:
        raise RouterConfigError(f"{p}: missing field 'decisions' (or 'routing.decisions'): a non-empty list")
    ml = _ml_block(raw)
    if ml.get("enabled") is False:
        log.warning("%s: model_selection.ml.enabled is false; evaluating the decisions anyway", p)
    decisions = [_parse_decision(d, i, str(p), ml) for i, d in enumerate(decisions_raw)]
    names = _check_decisions(p, decisions)
    default_decision = raw.get("default_decision")
    if default_decision is not None and default_decision not in names:
        raise RouterConfigError(f"{p}: default_decision {default_decision!r} is not a decision; decisions: {sorted(names)}")
    cfg = RouterConfig(str(p), decisions, default_decision, ml)
    if models is not None:
        cfg.check_models(models)
    return cfg


def static_config(lookup: Sequence[dict[str, Any]], source: str) -> dict[str, Any]:
    """A per-decision config that sends each category to one model (static routing, no ML).

    ``lookup`` holds one row per category of :data:`mlsel.CATEGORIES` with
    ``group`` (the category), ``model`` and ``source`` (``train``, or
    ``fallback: ...`` where the best single model stands in), as
    :func:`mlsel.metrics.evaluate.lookup_table` writes them. One decision per
    model, matching its categories with ``OR``; the fallback model's decision
    is the ``default_decision``.
    """
    chosen = {str(r["group"]): str(r["model"]) for r in lookup}
    missing = [c for c in CATEGORIES if c not in chosen]
    if missing:
        raise ValueError(f"static_config: no model for categories {missing}")
    fallback = next((str(r["model"]) for r in lookup if str(r["source"]).startswith("fallback")), None)
    by_model: dict[str, list[str]] = {}
    for c in CATEGORIES:
        by_model.setdefault(chosen[c], []).append(c)
    decisions = [{"name": f"static_{i}", "description": f"{model}: {', '.join(cats)} ({source})", "priority": 100,
                  "rules": {"operator": "OR", "conditions": [{"type": "domain", "name": c} for c in cats]},
                  "modelRefs": [{"model": model}]} for i, (model, cats) in enumerate(by_model.items())]
    out: dict[str, Any] = {"decisions": decisions}
    if fallback is not None:
        out["default_decision"] = next(d["name"] for d in decisions if d["modelRefs"][0]["model"] == fallback)
    return out
