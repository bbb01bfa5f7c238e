"""Datasets side by side (:func:`mlsel.runner.run_datasets`): overlap, order of the records, and what a failure stops."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlsel import runner
from mlsel.params import Params


def _fake_stage(log_dir: Path, fail: str = ""):
    """A stand-in for :func:`mlsel.runner.run_stage`: records when each dataset's stage ran, sleeps, may fail."""

    def run_stage(stage, params, force, progress):
        name = Path(params.base.run_dir).name
        start = time.time()
        time.sleep(0.3)
        (log_dir / f"{name}-{stage}.json").write_text(json.dumps({"start": start, "end": time.time()}))
        if f"{name}/{stage}" == fail:
            raise RuntimeError(f"stage {stage} of {name} failed")
        return {"notebook": f"{name}/{stage}.ipynb", "seconds": 0.3, "skipped": False}

    return run_stage


def _work(tmp_path: Path, names: list[str]) -> list:
    return [(n, Params().model_copy(update={"base": Params().base.model_copy(update={"run_dir": str(tmp_path / n)})}), ["train", "tune"])
            for n in names]


def _span(log_dir: Path, name: str) -> tuple[float, float]:
    runs = [json.loads(p.read_text()) for p in sorted(log_dir.glob(f"{name}-*.json"))]
    return min(r["start"] for r in runs), max(r["end"] for r in runs)


def test_two_datasets_run_side_by_side_and_the_records_keep_the_datasets_order(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_stage", _fake_stage(tmp_path))
    done = runner.run_datasets(_work(tmp_path, ["a", "b", "c"]), jobs=2)
    assert list(done) == ["a/train", "a/tune", "b/train", "b/tune", "c/train", "c/tune"]
    assert done["b/tune"]["notebook"] == "b/tune.ipynb"
    (a0, a1), (b0, b1), (c0, c1) = (_span(tmp_path, n) for n in "abc")
    assert b0 < a1 and a0 < b1  # a and b overlapped
    assert c0 >= min(a1, b1)  # c waited for a free process


def test_one_job_runs_the_datasets_one_after_another(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_stage", _fake_stage(tmp_path))
    done = runner.run_datasets(_work(tmp_path, ["a", "b"]), jobs=1)
    assert list(done) == ["a/train", "a/tune", "b/train", "b/tune"]
    assert _span(tmp_path, "a")[1] <= _span(tmp_path, "b")[0]


def test_a_failure_lets_the_running_dataset_finish_and_starts_no_other(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_stage", _fake_stage(tmp_path, fail="a/train"))
    with pytest.raises(RuntimeError, match="stage train of a failed"):
        runner.run_datasets(_work(tmp_path, ["a", "b", "c"]), jobs=2)
    ran = sorted(p.stem for p in tmp_path.glob("*.json"))
    assert ran == ["a-train", "b-train", "b-tune"]  # a stopped at its failure, b finished, c never started
