"""The tune stage on a real local Dask cluster (joblib's dask backend) gives the same tables as local joblib."""

from __future__ import annotations

import os
import shutil
import time

import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream

from mlsel.features import EmbedSettings
from mlsel.params import ConfigError, for_stage, stage_params
from mlsel.paths import run_paths
from mlsel.tuning import FeatureCache, build_cv_tasks, final_tables, fit_final, load_pools, operating_points, run_cv_tasks
from mlsel.tuning.choice import cv_sweep, cv_table
from mlsel.tuning.stage import tune_plan, tune_selectors

TIMING = ["cpu_s", "cpu_seconds"]


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes: every task is pickled to another process."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def tune_p(smoke_run):
    """The smoke run's tune parameters, cut down: small grid, 2 folds, two routers, three cost weights."""
    p = stage_params(smoke_run, "tune")
    return for_stage("tune", {**p.model_dump(), "tune_grid": "small", "tune_n_folds": 2, "tune_n_seeds": 1, "tune_n_jobs": 2,
                              "tune_router_names": ["knn_reg", "logreg"], "tune_cost_lambdas": [0.0, 0.1, 1.0],
                              "tune_n_bootstrap": 50})


@pytest.fixture(scope="module")
def cv_inputs(tune_p):
    plan = tune_plan(tune_p)
    pools = load_pools(tune_p.run_dir, tune_p.pools)
    features = FeatureCache(EmbedSettings.from_params(tune_p))
    tasks, grids, _ = build_cv_tasks(tune_p, plan, pools, features)
    return plan, pools, features, tasks, grids


@pytest.fixture(scope="module")
def local_raw(cv_inputs, tune_p):
    return run_cv_tasks(cv_inputs[3], tune_p.tune_n_jobs)


def _on_cluster(cluster, fn):
    """``fn()``'s result and the keys of the tasks the cluster's workers ran meanwhile (none from this process)."""
    with Client(cluster.scheduler_address, set_as_default=False) as c:
        assert os.getpid() not in c.run(os.getpid).values()
        with get_task_stream(c) as ts:
            out = fn()
    return out, [t["key"] for t in ts.data]


@pytest.mark.slow
def test_cv_on_dask_matches_local_joblib(cluster, cv_inputs, local_raw, tune_p):
    tasks = cv_inputs[3]
    raw, keys = _on_cluster(cluster, lambda: run_cv_tasks(tasks, tune_p.tune_n_jobs, scheduler=cluster.scheduler_address))
    assert any(str(k).startswith("batch_of_indexed") for k in keys), keys  # each CV task runs as indexed(i, call_with, ...)
    assert len(raw) == sum(len(t.combos) for t in tasks)
    pd.testing.assert_frame_equal(raw.drop(columns="cpu_s"), local_raw.drop(columns="cpu_s"))


@pytest.mark.slow
def test_final_fits_on_dask_match_local_joblib(cluster, cv_inputs, local_raw, tune_p):
    plan, pools, features, _, grids = cv_inputs
    _, chosen = cv_table(local_raw, grids, pools)
    sweep = cv_sweep(local_raw, grids, chosen, pools, plan.lambdas)
    operating = operating_points(pools, sweep, plan.router_names, tune_p.quality_weight, tune_p.tune_match_quality_ratio)
    combos = {key: grids[key][i] for key, i in chosen.items()}
    values = tune_p.model_dump()
    local = fit_final(values, plan, pools, combos, operating, features, tune_p.tune_n_jobs)
    fitted, keys = _on_cluster(cluster, lambda: fit_final(values, plan, pools, combos, operating, features, tune_p.tune_n_jobs,
                                                          scheduler=cluster.scheduler_address))
    assert any(str(k).startswith("batch_of_final_task") for k in keys), keys
    assert fitted.keys() == local.keys()
    for got, want in zip(final_tables(tune_p, plan, pools, fitted, operating), final_tables(tune_p, plan, pools, local, operating)):
        pd.testing.assert_frame_equal(got, want)


@pytest.mark.slow
def test_tune_stage_on_dask_matches_local(cluster, tune_p, tmp_path):
    """End to end: needs tune_selectors to pass ``p.tune_dask_scheduler`` to run_cv_tasks and fit_final."""
    runs = {}
    for kind, scheduler in (("local", ""), ("dask", cluster.scheduler_address)):
        run_dir = tmp_path / kind
        shutil.copytree(tune_p.run_dir, run_dir)
        p = tune_p.model_copy(update={"run_dir": str(run_dir), "tune_dask_scheduler": scheduler})
        _, keys = _on_cluster(cluster, lambda: tune_selectors(p))
        assert bool(keys) == bool(scheduler), (f"{kind} run, tasks on the cluster: {keys} (does tune_selectors pass "
                                               "p.tune_dask_scheduler to run_cv_tasks and fit_final?)")
        runs[kind] = run_paths(str(run_dir))
    for folder, name in (("tune", "cv_results.csv"), ("tune", "cv_frontier.csv"), ("tables", "tune_heatmap.csv"),
                         ("tables", "tuned_results.csv"), ("tables", "frontier.csv"), ("tables", "aiq.csv")):
        got, want = (pd.read_csv(runs[k][folder] / name) for k in ("dask", "local"))
        pd.testing.assert_frame_equal(got.drop(columns=TIMING, errors="ignore"), want.drop(columns=TIMING, errors="ignore"), obj=name)
    got, want = ((runs[k]["tune"] / "tuned_params.yaml").read_text().replace(str(tmp_path / k), "RUN") for k in ("dask", "local"))
    assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "no-port-here"])
def test_unreachable_scheduler_fails_fast(cv_inputs, tune_p, address):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="tune_dask_scheduler") as err:
        run_cv_tasks(cv_inputs[3][:1], tune_p.tune_n_jobs, scheduler=address)
    assert address in str(err.value)
    assert time.perf_counter() - t0 < 30
