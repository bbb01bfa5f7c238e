"""The report's provenance section: input checksums, record counts, every stage's parameters (secrets masked), software."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlsel.params import STAGES
from mlsel.publish import MASK, is_secret_name, publishable
from mlsel.report.blocks import Section, Table, Text
from mlsel.report.tables import fmt_generic, read_table, slug


def mask_secrets(value: Any) -> Any:
    """Copy of a (nested) parameter mapping with secret-named keys' values masked and credentials inside strings masked
    (:func:`~mlsel.publish.publishable`; the page's paths are made relative when it is written)."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_name(k) and v not in (None, "") else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return publishable(value, local_paths=False)
    return value


def _param_text(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=False, default=str)
    if v == "":
        return '""'
    return str(v)


def _kv_table(id: str, caption: str, items: list[tuple[str, str]], head: tuple[str, str] = ("Item", "Value"), cls: str = "mono") -> Table:
    return Table(id, caption, list(head), [[(k, "name"), (v, cls)] for k, v in items])


def provenance_section(manifest: dict[str, Any], csvs: list[str], tables_dir: Path, rendered: tuple[str, ...]) -> Section:
    """Provenance from the manifest; ``csvs`` are the run's tables, ``rendered`` those the page shows."""
    sec = Section("provenance", "Data provenance and parameters")
    if not manifest.get("stages") and not manifest.get("git_commit"):
        sec.blocks.append(Text(text="This run folder has no manifest.json: provenance is unknown."))
    stages = manifest.get("stages", {})
    prep = stages.get("prepare", {})
    dlog = prep.get("data") or {}
    if dlog:
        sec.blocks.append(Text(heading="Input data"))
        inputs = sorted((dlog.get("inputs") or {}).items())
        sec.blocks.append(Table("prov-inputs", "Input files read by the prepare stage, with SHA-256.", ["File", "SHA-256"],
                                [[(str(k), "mono"), (str(v), "mono")] for k, v in inputs]))
        counts = [("records read", fmt_generic(dlog.get("n_records_read")))]
        for key in ("n_queries", "n_train", "n_test"):
            if key in prep:
                counts.append((key.replace("n_", "queries: ") if key != "n_queries" else "queries kept", fmt_generic(prep[key])))
        for kind in ("dropped", "repaired"):
            for reason, n in sorted((dlog.get(kind) or {}).items()):
                counts.append((f"{kind}: {reason}", fmt_generic(n)))
        sec.blocks.append(_kv_table("prov-counts", "Records read, kept, dropped and repaired (by reason).", counts, ("Count", "Records"), cls="num"))
        outputs = sorted((prep.get("outputs") or {}).items())
        if outputs:
            sec.blocks.append(_kv_table("prov-outputs", "Prepared data files, with SHA-256.", [(k, str(v)) for k, v in outputs], ("File", "SHA-256")))
    order = [s for s in STAGES if s in stages] + sorted(s for s in stages if s not in STAGES)
    if order:
        sec.blocks.append(Text(heading="Parameters of every stage"))
    for stage in order:
        entry = stages[stage] or {}
        params = mask_secrets(entry.get("params") or {})
        items = [(str(k), _param_text(v)) for k, v in sorted(params.items())]
        extra = [f"params hash {entry['params_hash']}"] if entry.get("params_hash") else []
        if entry.get("data_hash"):
            extra.append(f"data hash {entry['data_hash']}")
        sec.blocks.append(_kv_table(f"prov-params-{slug(stage)}", f"Stage {stage}" + (f" ({'; '.join(extra)})" if extra else "") + ".",
                                    items, ("Parameter", "Value")))
    versions = sorted((manifest.get("package_versions") or {}).items())
    if versions or manifest.get("git_commit"):
        sec.blocks.append(Text(heading="Software"))
        items = [("git commit", str(manifest.get("git_commit", "unknown")))] + [(k, str(v)) for k, v in versions]
        items += [(k.replace("_", " "), str(v)) for k, v in (manifest.get("platform") or {}).items()]
        sec.blocks.append(_kv_table("prov-software", "Git commit, package versions, and the CPU and float kernels that ran.", items,
                                    ("Package", "Version")))
    sec.blocks.append(Text(heading="Tables"))
    rows = []
    for name in csvs:
        df = read_table(tables_dir, name)
        shape = f"{len(df)} rows x {len(df.columns)} columns" if df is not None else ""
        rows.append([(name, "link"), (shape, ""), ("shown above" if name in rendered else "not rendered; linked only", "")])
    sec.blocks.append(Table("prov-tables", "Every CSV of the run folder, copied byte-identical into tables/ beside this page.",
                            ["File", "Size", "In this report"], rows))
    return sec
