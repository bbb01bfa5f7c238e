"""RouterBench (RouterDC re-split) reader: the real mirror, the query-text rule, and known answers on tiny CSVs."""

from __future__ import annotations

import ast
import csv
import gzip
import io
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from mlsel import CATEGORIES
from mlsel.data.records import OUTCOME_COLUMNS, DataError, DataLog
from mlsel.data.routerbench import (
    ROUTERBENCH_TASK_CATEGORY,
    read_routerbench,
    read_routerbench_files,
    routerbench_query_text,
    strip_few_shot,
)
from mlsel.data.sources import ROUTERBENCH_SOURCES, fetch

META = ("Unnamed: 0", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to")

# ---------------------------------------------------------------- real mirror


def _independent_query(cell: str) -> str:
    """The documented rule, written independently: the prompt after the last answered exemplar."""
    return re.split(r"Answer:\n[A-Z]\n\n", ast.literal_eval(cell)[0])[-1]


@pytest.fixture(scope="module")
def raw(data_dir) -> dict[str, pd.DataFrame]:
    """The six source CSVs read with plain pandas, with the query text added."""
    out = {}
    for name, src in ROUTERBENCH_SOURCES.items():
        df = pd.read_csv(data_dir / src.relpath)
        df["q"] = df["prompt"].map(_independent_query)
        out[name] = df
    return out


@pytest.fixture(scope="module")
def read(data_dir) -> tuple[pd.DataFrame, DataLog]:
    dlog = DataLog()
    return read_routerbench(data_dir=data_dir, dlog=dlog), dlog


def _models(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if "|" not in c and c not in (*META, "q")]


def test_real_mirror_counts(raw, read):
    df, dlog = read
    assert list(df.columns) == [*OUTCOME_COLUMNS, "source_split", "source_row"]
    models = _models(raw["mbpp_test"])
    assert len(models) == 11 and set(df["model"]) == set(models)
    n_prompt_rows = sum(len(r) for r in raw.values())
    assert n_prompt_rows == 3178  # PROVENANCE.md
    assert dlog.n_records_read == n_prompt_rows and len(df) == 11 * n_prompt_rows == 34958
    all_q = pd.concat([r["q"] for r in raw.values()])
    assert df["query"].nunique() == df["query_id"].nunique() == all_q.nunique() == 3162
    assert dlog.repaired["routerbench_duplicate_sample_id"] == sum(int(r["sample_id"].duplicated().sum()) for r in raw.values()) == 8
    assert len(dlog.inputs) == 6 and all(len(v) == 64 for v in dlog.inputs.values())
    for model in models:
        expect = sum(int(r[model].isna().sum()) for r in raw.values())
        assert df.loc[df["model"] == model, "quality"].isna().sum() == expect == 14


def test_real_mirror_values(read):
    df, _ = read
    known = df["quality"].notna()
    assert df.loc[known, "quality"].isin([0.0, 1.0]).all()
    cost = df.loc[known, "cost_usd"]
    assert cost.map(math.isfinite).all() and (cost >= 0).all()
    assert df["latency_s"].isna().all()  # no latency in RouterBench; never derived from cost
    assert (df["response_chars"] >= 0).all()
    assert set(df["task"]) == set(ROUTERBENCH_TASK_CATEGORY)
    assert set(df["category"]) <= set(CATEGORIES)
    for task, cat in ROUTERBENCH_TASK_CATEGORY.items():
        assert set(df.loc[df["task"] == task, "category"]) == {cat}
    assert ROUTERBENCH_TASK_CATEGORY["mbpp"] == "computer science"
    # The shared few-shot preambles are gone: no query holds an answered exemplar.
    assert not df["query"].str.contains(r"Answer:\n[A-Z]\n\n", regex=True).any()
    assert df.loc[df["task"] != "mbpp", "query"].str.endswith("Answer:").all()


def test_real_mirror_source_split(raw, read):
    df, dlog = read
    test_q = set(pd.concat([raw[n]["q"] for n in raw if n.endswith("_test")]))
    both = {q for n in raw if n.endswith("_train") for q in raw[n]["q"]} & test_q
    assert dlog.repaired["routerbench_query_in_train_and_test"] == len(both) == 8
    per_q = df.groupby("query_id")["source_split"].nunique()
    assert (per_q == 1).all()  # no query is on both sides
    assert set(df.loc[df["query"].isin(both), "source_split"]) == {"test"}
    one_model = df[df["model"] == df["model"].iloc[0]]
    counts = one_model.groupby(["task", "source_split"]).size()
    for name, r in raw.items():
        task = r["eval_name"].iloc[0]
        if name.endswith("_train"):
            expect_train = int((~r["q"].isin(test_q)).sum())
            assert counts[(task, "train")] == expect_train
            test_name = name.replace("_train", "_test")
            assert counts[(task, "test")] == len(raw[test_name]) + len(r) - expect_train
    assert counts.sum() == 3178


def test_mirror_checksums_are_of_decompressed_bytes(data_dir):
    src = ROUTERBENCH_SOURCES["mbpp_test"]
    assert src.url.endswith("/datasets/routerbench_zs/mbpp_test.csv") and "1963d6874b69c94309ea37a34d7d4cd6f527e7c5" in src.url
    assert fetch(src, data_dir) == data_dir / "routerbench-subset-routerdc/raw/mbpp_test.csv.gz"


# ---------------------------------------------------------------- the query-text rule

ARC_SHOT = 'Q{}?\nA) x\nB) y\nPrint only a single choice  from "A" or "B" without explanation.\nAnswer:\n{}\n\n'
WINO_SHOT = 'Please answer with the letter.\n\nS{} _ .\nA) x\nB) y\nPrint only a single choice  from "A" or "B" without explanation. Answer:\n{}\n\n'


def test_strip_few_shot_keeps_only_the_question():
    question = 'Which gas do plants take in?\nA) oxygen\nB) carbon dioxide\nPrint only a single choice  from "A" or "B".\nAnswer:'
    arc = "".join(ARC_SHOT.format(i, "AB"[i % 2]) for i in range(5)) + question
    assert strip_few_shot(arc) == question
    wino = "".join(WINO_SHOT.format(i, "BA"[i % 2]) for i in range(5)) + "Tom beat Sam so _ won.\nA) Tom\nB) Sam\n Answer:"
    assert strip_few_shot(wino) == "Tom beat Sam so _ won.\nA) Tom\nB) Sam\n Answer:"
    mbpp = "Write a function to add two numbers.\n\nUse Python."
    assert strip_few_shot(mbpp) == mbpp
    assert strip_few_shot(arc) == strip_few_shot(arc)  # deterministic
    assert routerbench_query_text(repr([arc])) == question
    assert routerbench_query_text(repr([arc, arc])) == question  # identical repeats are one text


@pytest.mark.parametrize("cell", ["not a list", "'just a string'", "[1, 2]", "[]", "['a', 'b']"])
def test_bad_prompt_cells_are_errors(cell):
    with pytest.raises(DataError, match="f.csv:7"):
        routerbench_query_text(cell, "f.csv:7")


# ---------------------------------------------------------------- tiny hand-written files

HEADER = ["", "sample_id", "prompt", "eval_name", "a", "b", "a|model_response", "a|total_cost",
          "b|model_response", "b|total_cost", "oracle_model_to_route_to"]


def _row(i, text="Write a function.", qa="1", qb="0", ca="0.001", cb="0.002", sid=None, task="mbpp"):
    return [str(i), sid or f"mbpp.dev.{i}", repr([text]), task, qa, qb, repr(["ok"]), ca, repr(["fine!"]), cb, "a"]


def _write(path: Path, rows: list, header: list = HEADER) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:  # a list is a record; a string is a raw (possibly malformed) line
        if isinstance(r, str):
            buf.write(r)
        else:
            writer.writerow(r)
    path.write_bytes(gzip.compress(buf.getvalue().encode("utf-8")))
    return path


def test_known_answers_on_a_tiny_file(tmp_path):
    path = _write(tmp_path / "mbpp_train.csv.gz", [_row(0), _row(1, "Sort a list.", qa="", ca="")])
    df = read_routerbench_files([path])
    assert len(df) == 4 and list(df["model"]) == ["a", "b", "a", "b"]
    assert list(df["quality"].iloc[[0, 1, 3]]) == [1.0, 0.0, 0.0]
    assert math.isnan(df["quality"].iloc[2]) and math.isnan(df["cost_usd"].iloc[2])  # NaN cell -> NaN quality
    assert list(df["cost_usd"].iloc[[0, 1]]) == [0.001, 0.002]
    assert list(df["response_chars"].iloc[[0, 1]]) == [2.0, 5.0]
    assert set(df["category"]) == {"computer science"} and set(df["source_split"]) == {"train"}
    assert df["latency_s"].isna().all()


def test_malformed_line_names_file_and_line(tmp_path):
    # Line 2 is a record spanning two physical lines (a quoted line break); the bad record starts on line 4.
    good = _row(0)
    good[-1] = "a\nb"  # oracle_model_to_route_to, quoted by the writer
    rows = [good, ",".join(_row(1)[:5]) + "\n"]
    path = _write(tmp_path / "mbpp_test.csv.gz", rows)
    with pytest.raises(DataError, match=r"mbpp_test\.csv\.gz:4: malformed CSV"):
        read_routerbench_files([path])


def test_unreadable_gzip_names_the_file(tmp_path):
    path = tmp_path / "mbpp_test.csv.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match=r"mbpp_test\.csv\.gz:1: unreadable"):
        read_routerbench_files([path])


def test_cost_column_without_model_column(tmp_path):
    path = _write(tmp_path / "mbpp_test.csv.gz", [_row(0) + ["0.1"]], HEADER + ["foo|total_cost"])
    with pytest.raises(DataError, match=r"mbpp_test\.csv\.gz:1: unknown model column 'foo\|total_cost'"):
        read_routerbench_files([path])


def test_model_without_cost_column_and_missing_required_column(tmp_path):
    header = [c for c in HEADER if c != "b|total_cost"]
    path = _write(tmp_path / "mbpp_test.csv.gz", [_row(0)[:-2] + ["a"]], header)
    with pytest.raises(DataError, match=r"'b\|total_cost'"):
        read_routerbench_files([path])
    header = [c if c != "eval_name" else "task" for c in HEADER]
    path = _write(tmp_path / "mbpp_train.csv.gz", [_row(0)], header)
    with pytest.raises(DataError, match=r"mbpp_train\.csv\.gz:1: missing required column 'eval_name'"):
        read_routerbench_files([path])


def test_quality_of_2_names_the_model(tmp_path):
    path = _write(tmp_path / "mbpp_test.csv.gz", [_row(0), _row(1, "Sort.", qb="2")])
    with pytest.raises(DataError, match=r"mbpp_test\.csv\.gz:3 \(sample_id 'mbpp.dev.1'\) model 'b'"):
        read_routerbench_files([path])


@pytest.mark.parametrize("kw, msg", [
    ({"cb": "-0.5"}, "total_cost must be a finite number >= 0"),
    ({"cb": "inf"}, "total_cost must be a finite number >= 0"),
    ({"cb": ""}, "empty total_cost for a scored cell"),
    ({"task": "hellaswag"}, "unknown eval_name 'hellaswag'"),
])
def test_bad_cells_are_errors(tmp_path, kw, msg):
    path = _write(tmp_path / "mbpp_test.csv.gz", [_row(0, **kw)])
    with pytest.raises(DataError, match=rf"mbpp_test\.csv\.gz:2 .*{re.escape(msg)}"):
        read_routerbench_files([path])


def test_models_must_match_across_files(tmp_path):
    one = _write(tmp_path / "mbpp_train.csv.gz", [_row(0)])
    header = [c.replace("b", "c") if c.startswith("b") else c for c in HEADER]
    two = _write(tmp_path / "mbpp_test.csv.gz", [_row(1)], header)
    with pytest.raises(DataError, match="models differ"):
        read_routerbench_files([one, two])


def test_duplicates_and_test_file_wins(tmp_path):
    train = _write(tmp_path / "mbpp_train.csv.gz", [_row(0, "Q1."), _row(1, "Q1.", sid="mbpp.dev.0"), _row(2, "Q2.")])
    test = _write(tmp_path / "mbpp_test.csv.gz", [_row(3, "Q1.")])
    dlog = DataLog()
    df = read_routerbench_files([train, test], dlog)
    assert dlog.n_records_read == 4 and len(df) == 8
    assert dlog.repaired["routerbench_duplicate_sample_id"] == 1
    assert dlog.repaired["routerbench_query_in_train_and_test"] == 1
    assert set(df.loc[df["query"] == "Q1.", "source_split"]) == {"test"}
    assert set(df.loc[df["query"] == "Q2.", "source_split"]) == {"train"}
    assert df.loc[df["query"] == "Q1.", "query_id"].nunique() == 1
    assert set(dlog.inputs) == {str(train), str(test)}
