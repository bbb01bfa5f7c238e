"""What is published, where: experiments never touch reports/, `mlsel results` reads the published tables, and no published file
carries a credential or an absolute path of the machine that ran it.

Runs that go through the CLI work in a copy of the project (its params.yaml, notebooks and published reports/ in a temporary
folder, the project root by the working directory as for a user): a run that wrongly rewrote reports/ rewrites the copy's,
never the repository's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlsel import runner
from mlsel.params import ConfigError, load_params

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "reports"
MLSEL = Path(sys.executable).with_name("mlsel")


def tree_hash(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def project_copy(dest: Path, params_changes: dict[str, dict] | None = None) -> Path:
    """A fresh-clone-like project: params.yaml (with ``params_changes`` per section), notebooks/, examples/ and the published
    reports/ copied; no runs/."""
    dest.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in (params_changes or {}).items():
        raw[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for name in ("notebooks", "examples"):  # copies, not links: a kernel's working folder is notebooks/ by its real path
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copytree(PUBLISHED, dest / "reports")
    return dest


def cli(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``mlsel <args>`` run in ``project`` as a user would (the project root found from the working directory)."""
    env = {k: v for k, v in os.environ.items() if k != "MLSEL_ROOT"}
    return subprocess.run([str(MLSEL), *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- 1. experiments never touch reports/


def _folder(overrides=None, params_file=None, smoke=False, publish=False) -> Path:
    file_params = load_params(params_file)
    return Path(runner.report_folder(file_params, params_file, overrides, smoke, publish))


def test_only_the_default_run_or_publish_writes_the_published_report(tmp_path):
    published = ROOT / "reports"
    assert _folder() == published
    assert _folder(publish=True) == published
    assert _folder(overrides=["datasets=[routerbench]"], publish=True) == published
    # Overrides, the smoke profile, another parameter file: the run's own folder.
    assert _folder(overrides=["datasets=[routerbench]"]) == ROOT / "runs" / "default" / "report"
    assert _folder(overrides={"knn_k": 7}) == ROOT / "runs" / "default" / "report"
    assert _folder(smoke=True) == ROOT / "runs" / "smoke" / "report"
    assert _folder(smoke=True, overrides={"run_dir": str(tmp_path / "r")}) == tmp_path / "r" / "report"
    mine = tmp_path / "mine.yaml"
    mine.write_text("base:\n  run_dir: runs/mine\n")
    assert _folder(params_file=mine) == ROOT / "runs" / "mine" / "report"
    # An explicit report folder is respected; the published one only with --publish.
    assert _folder(overrides={"report_dir": str(tmp_path / "site")}) == tmp_path / "site"
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text(f"report:\n  report_dir: {tmp_path / 'chosen'}\n")
    assert _folder(params_file=chosen) == tmp_path / "chosen"
    with pytest.raises(ConfigError, match="--publish"):
        _folder(overrides=["report_dir=reports", "knn_k=7"])
    with pytest.raises(ConfigError, match="--publish"):
        _folder(overrides={"report_dir": str(tmp_path / "site")}, publish=True)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a whole run through the CLI, whose own limit is 900 s (cli)
def test_the_readme_one_dataset_example_leaves_reports_byte_identical(tmp_path):
    """`mlsel run -p "datasets=[routerbench]"` (README) in a copy of the project whose params.yaml has the smoke sizes: the
    copy's reports/ is byte-for-byte unchanged, the report is in runs/default/report, and the run says so at the end."""
    small = {"prepare": {"max_queries": 600}, "base": {"n_bootstrap": 200}, "tune": {"tune_grid": "small", "tune_n_bootstrap": 200}}
    project = project_copy(tmp_path / "clone", small)
    before, repository_before = tree_hash(project / "reports"), tree_hash(PUBLISHED)
    out = cli(project, "run", "-p", "datasets=[routerbench]")
    assert out.returncode == 0, out.stderr[-3000:]
    assert tree_hash(project / "reports") == before
    assert tree_hash(PUBLISHED) == repository_before  # nothing escaped the copy either
    assert (project / "runs" / "default" / "routerbench" / "tables" / "summary.csv").is_file()  # the stages ran in the copy
    own = project / "runs" / "default" / "report"
    assert (own / "index.html").is_file() and (own / "notebooks" / "routerbench" / "00_prepare_data.html").is_file()
    assert pd.read_csv(own / "tables" / "summary.csv")["dataset"].tolist() == ["routerbench"]
    assert "report: runs/default/report/index.html" in out.stdout.splitlines()[-1]
    assert "reports/ unchanged" in out.stdout.splitlines()[-1]


# --------------------------------------------------------------------------- 2. mlsel results


def _seed_tables(tables: Path, ds: str) -> str:
    from mlsel.report.tables import seed_tables_markdown

    return seed_tables_markdown(pd.read_csv(tables / ds / "selection_results.csv"))


def test_results_on_a_fresh_clone_prints_the_published_matrix(tmp_path):
    from mlsel.report.overview import summary_markdown

    project = project_copy(tmp_path / "clone")
    assert not (project / "runs").exists()
    out = cli(project, "results", timeout=300)
    assert out.returncode == 0, out.stderr
    tables = project / "reports" / "tables"
    assert summary_markdown(pd.read_csv(tables / "summary.csv")) in out.stdout
    for ds in ("mmlu_pro", "llmrouter", "llmrouter_by_task", "routerbench"):
        assert _seed_tables(tables, ds) in out.stdout, ds
    assert "reports/tables/summary.csv" in out.stdout


def test_results_of_a_run_when_asked(tmp_path):
    from mlsel.report.overview import summary_markdown

    project = project_copy(tmp_path / "clone")
    run = project / "runs" / "xyz"
    (run / "tables").mkdir(parents=True)
    summary = pd.read_csv(PUBLISHED / "tables" / "summary.csv")
    summary = summary[summary["dataset"] == "routerbench"].assign(dataset="custom")
    summary.to_csv(run / "tables" / "summary.csv", index=False)
    (run / "custom" / "tables").mkdir(parents=True)  # a dataset of this run's own parameter file, not of params.yaml
    (run / "custom" / "tables" / "seed_tables.md").write_text("### Pool `p1` — this run's own seed tables\n")
    out = cli(project, "results", "--run", "runs/xyz", timeout=300)
    assert out.returncode == 0, out.stderr
    assert summary_markdown(summary) in out.stdout and "## custom: the reference's two tables" in out.stdout
    assert "this run's own seed tables" in out.stdout and "runs/xyz/tables/summary.csv" in out.stdout
    assert "MMLU-Pro" not in out.stdout  # nothing of the published report
    missing = cli(project, "results", "--run", "runs/none", timeout=300)
    assert missing.returncode == 1 and "runs/none: no results" in missing.stderr


def test_results_of_one_dataset_folder_of_a_run(tmp_path, capsys):
    """`mlsel results --run <run>/<dataset>`: that dataset's summary rows (its summary.csv has no dataset column: the folder
    names it) and its seed tables, not a dataset named ``tables``."""
    from mlsel.cli import main
    from mlsel.report.overview import summary_markdown

    folder = tmp_path / "run" / "routerbench"
    (folder / "tables").mkdir(parents=True)
    (folder / "data").mkdir()  # other folders of a dataset's run folder are not datasets
    summary = pd.read_csv(PUBLISHED / "tables" / "summary.csv")
    summary = summary[summary["dataset"] == "routerbench"]
    summary.drop(columns="dataset").to_csv(folder / "tables" / "summary.csv", index=False)  # as the tune stage writes it
    shutil.copy(PUBLISHED / "tables" / "routerbench" / "selection_results.csv", folder / "tables" / "selection_results.csv")
    assert main(["results", "--run", str(folder)]) == 0
    out = capsys.readouterr().out
    assert summary_markdown(summary) in out and _seed_tables(PUBLISHED / "tables", "routerbench") in out
    assert "## RouterBench: the reference's two tables" in out and out.count("the reference's two tables") == 1
    assert f"{folder / 'tables' / 'summary.csv'}" in out


# --------------------------------------------------------------------------- 3. nothing secret or local is published


def _digest_name(path: str) -> str:
    """The documented published form of an absolute path outside every known folder: file name, ``#``, 8 hex digits of
    the SHA-256 of the whole path (written out here, not taken from mlsel.publish)."""
    return f"{path.rsplit('/', 1)[-1]}#{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def _named(path: Path) -> str:
    """How an absolute path is published wherever the checkout and the temp folder are: named from the innermost of the
    temp folder, the home folder and the project that holds it (relative under the project), else by its name and digest."""
    import tempfile

    roots = [(Path(tempfile.gettempdir()).resolve(), "$TMPDIR/"), (Path.home().resolve(), "~/"), (ROOT, "")]
    inside = sorted(((r, n) for r, n in roots if path.is_relative_to(r)), key=lambda rn: -len(str(rn[0])))
    return f"{inside[0][1]}{path.relative_to(inside[0][0]).as_posix()}" if inside else _digest_name(str(path))


def test_publishable_masks_credentials_and_local_paths(tmp_path, monkeypatch):
    from mlsel.publish import MASK, publishable

    data, cache = tmp_path / "mirror", tmp_path / "cache"
    monkeypatch.setenv("MLSEL_DATA_DIR", str(data))
    monkeypatch.setenv("MLSEL_CACHE_DIR", str(cache))
    home = str(Path.home())
    text = ("endpoint https://alice:pw0rd@llm.example.com/v1?model=m&api_key=sk-1&key=AIza9 -H 'Authorization: Basic dXNlcjpwdw=='"
            f" {{'Authorization': 'Bearer sk-live'}} Bearer tok3n read {data}/llmrouter/x.json, {cache}/embeddings/e.npy,"
            f" {ROOT}/runs/default/mmlu_pro/data/queries.csv, {tmp_path}/run/a/notebooks, {home}/notes.txt, cwd {ROOT}."
            f" kept: max_tokens=1024, /abs/elsewhere/f.csv, {ROOT}2/x <img src=\"data:image/png;base64,{tmp_path}/AAAA\">")
    out = publishable(text, run_dir=tmp_path / "run")
    for secret in ("alice", "pw0rd", "sk-1", "AIza9", "dXNlcjpwdw==", "sk-live", "tok3n"):
        assert secret not in out, secret
    assert f"https://{MASK}@llm.example.com/v1?model=m&api_key={MASK}&key={MASK}" in out
    assert f"'Authorization: Basic {MASK}'" in out and f"'Authorization': 'Bearer {MASK}'" in out and f"Bearer {MASK} read" in out
    assert "$MLSEL_DATA_DIR/llmrouter/x.json" in out and "$MLSEL_CACHE_DIR/embeddings/e.npy" in out
    run_shown = _named(tmp_path / "run" / "a" / "notebooks") if tmp_path.is_relative_to(ROOT) else "$RUN_DIR/a/notebooks"
    assert " runs/default/mmlu_pro/data/queries.csv" in out and run_shown in out and "cwd ." in out
    assert "max_tokens=1024" in out and _named(Path(f"{ROOT}2/x")) in out
    assert f"{_digest_name('/abs/elsewhere/f.csv')}, " in out and "/abs/elsewhere" not in out
    assert f"data:image/png;base64,{tmp_path}/AAAA" in out  # an embedded image's bytes are not text
    if not str(ROOT).startswith(home + "/"):
        assert "~/notes.txt" in out
    assert publishable(out, run_dir=tmp_path / "run") == out


SECRET_SPELLINGS = {
    # Each spelling of a credential a published file may carry -> the secret value in it, and how the published file shows it.
    "environment.sh": [("export OPENAI_API_KEY=sk-abc123", "sk-abc123", "export OPENAI_API_KEY=***"),
                       ("ANTHROPIC_API_KEY='xyz-single-q'", "xyz-single-q", "ANTHROPIC_API_KEY='***'"),
                       ('ANTHROPIC_API_KEY="xyz-double-q"', "xyz-double-q", 'ANTHROPIC_API_KEY="***"'),
                       ("api_token=abc-api-token", "abc-api-token", "api_token=***"),
                       ("aws_secret_access_key = abc-aws-secret", "abc-aws-secret", "aws_secret_access_key = ***")],
    "params.yaml": [("  openai_api_key: sk-abc-yaml", "sk-abc-yaml", "  openai_api_key: ***"),
                    ("  token: abc-token", "abc-token", "  token: ***"),
                    ("  secret: abc-secret", "abc-secret", "  secret: ***"),
                    ("  endpoint: https://alice-user:pw-in-url@llm.example.com/v1?model=m&api_key=sk-in-query&token=tok-in-query",
                     "pw-in-url", "  endpoint: https://***@llm.example.com/v1?model=m&api_key=***&token=***")],
    "endpoint.txt": [("curl -H 'Authorization: Bearer abc-bearer' https://llm.example.com/v1", "abc-bearer",
                      "curl -H 'Authorization: Bearer ***' https://llm.example.com/v1"),
                     ('{"hf_token": "abc-json", "x-api-key": "abc-header"}', "abc-json", '{"hf_token": "***", "x-api-key": "***"}')],
}
"""Per file: (line, secret value, the published line)."""
OTHER_SECRETS = ("alice-user", "sk-in-query", "tok-in-query", "abc-header")
"""Secret values of lines above that carry more than one."""


def test_every_published_file_masks_each_secret_spelling_and_local_path(tmp_path, monkeypatch):
    """Files whose parameters, endpoint and environment text carry each spelling of a credential, published through
    :func:`mlsel.publish.publish_file`: copied to a report folder, and in place (a report folder that is the run folder).
    No published file holds a secret value or a path of this machine; names that only describe a secret stay as they are; a
    mirror named by the data_dir parameter (recorded in the run's manifest, MLSEL_DATA_DIR unset) is shown relative; a
    path outside every known folder is shown by its name and digest."""
    from mlsel.publish import publish_file, publishable

    monkeypatch.delenv("MLSEL_DATA_DIR", raising=False)
    run, report, mirror = tmp_path / "run", tmp_path / "report", tmp_path / "mirror"
    (run / "tables").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"stages": {"prepare": {"params": {"data_dir": str(mirror)}}}}))
    for name, lines in SECRET_SPELLINGS.items():
        (run / name).write_text("\n".join(line for line, _, _ in lines) + "\n")
    with open(run / "params.yaml", "a") as fh:
        fh.write(f"  max_tokens: 256\n  token_count: 12\n  api_key: ${{OPENAI_API_KEY}}\n  data_dir: {mirror}\n"
                 "  source_path: /data/elsewhere/records.jsonl.gz\n")
    (run / "tables" / "inputs.csv").write_text(f"file,sha256\n{mirror}/llmrouter/x.json,ab12\n/data/elsewhere/records.jsonl.gz,cd34\n")
    sources = sorted(p for p in run.rglob("*") if p.is_file() and p.name != "manifest.json")
    copies = [publish_file(src, report / src.relative_to(run), run_dir=run) for src in sources]
    in_place = [publish_file(src, run_dir=run) for src in sources]
    assert in_place == sources and {p.relative_to(report) for p in copies} == {p.relative_to(run) for p in sources}
    secrets = [secret for lines in SECRET_SPELLINGS.values() for _, secret, _ in lines] + list(OTHER_SECRETS)
    leaks = [(str(path), found) for path in copies + in_place for found in [*secrets, str(tmp_path), "/data/elsewhere"]
             if found in path.read_text()]
    assert not leaks
    records = f"records.jsonl.gz#{hashlib.sha256(b'/data/elsewhere/records.jsonl.gz').hexdigest()[:8]}"
    for folder in (report, run):
        for name, lines in SECRET_SPELLINGS.items():
            published = (folder / name).read_text().splitlines()
            assert published[:len(lines)] == [shown for _, _, shown in lines], (folder, name)
        params = (folder / "params.yaml").read_text()
        for kept in ("  max_tokens: 256\n", "  token_count: 12\n", "  api_key: ${OPENAI_API_KEY}\n", f"  source_path: {records}\n"):
            assert kept in params, kept
        assert "  data_dir: $MLSEL_DATA_DIR\n" in params
        table = (folder / "tables" / "inputs.csv").read_text()
        assert table == f"file,sha256\n$MLSEL_DATA_DIR/llmrouter/x.json,ab12\n{records},cd34\n"
    # The parameter given directly, relative to the project as a parameter may be.
    other = ROOT.parent / "another-mirror"
    assert publishable(f"read {other}/a/b.json", data_dir=os.path.relpath(other, ROOT)) == "read $MLSEL_DATA_DIR/a/b.json"


@pytest.mark.slow
def test_a_credential_in_the_endpoint_and_local_paths_are_never_published(tmp_path):
    """A run whose benchmark endpoint carries credentials (no queries: nothing is called) publishes its report, notebook pages
    and tables; no published file holds the credential or an absolute path of this machine."""
    endpoint = "https://alice:s3cr3t-pw@llm.example.com/v1?api_key=sk-SECRET-42&model=m"
    run_dir = tmp_path / "run"
    overrides = {"run_dir": str(run_dir), "report_dir": str(run_dir / "report"), "datasets": ["mmlu_pro"], "endpoint": endpoint}
    runner.run(stages=["benchmark", "report"], overrides=overrides)
    report = run_dir / "report"
    published = [p for p in report.rglob("*") if p.is_file()]
    assert {"index.html", "notebooks/mmlu_pro/10_benchmark_models.html", "notebooks/90_build_report.html"} <= {
        str(p.relative_to(report)) for p in published}
    assert endpoint in (run_dir / "mmlu_pro" / "notebooks" / "10_benchmark_models.ipynb").read_text()  # the local notebook has it
    local = {str(tmp_path.parent.parent), str(ROOT), os.environ["MLSEL_DATA_DIR"], os.environ["MLSEL_CACHE_DIR"], str(Path.home())}
    leaks = []
    for path in published:
        text = path.read_text(encoding="utf-8", errors="replace")
        leaks += [(str(path.relative_to(report)), found) for found in ("s3cr3t-pw", "sk-SECRET-42", "alice:") if found in text]
        leaks += [(str(path.relative_to(report)), folder) for folder in local if folder + "/" in text]
    assert not leaks
    page = (report / "notebooks" / "mmlu_pro" / "10_benchmark_models.html").read_text()
    assert "https://***@llm.example.com/v1?api_key=***" in page


def test_every_published_file_is_under_the_2_mb_a_tracked_file_may_take():
    """The report embeds its figures; at six datasets their resolution and palette (mlsel.report.figures) keep the page small."""
    sizes = {p.relative_to(ROOT): p.stat().st_size for p in PUBLISHED.rglob("*") if p.is_file()}
    assert sizes and max(sizes.values()) < 2_000_000, max(sizes.items(), key=lambda kv: kv[1])
