"""Progress bars (mlsel.progress) and their relay by the runner: live on the terminal, periodic lines in CI, never in notebooks."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlsel import runner
from mlsel.progress import progress_bar

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(?P<desc>.+): (?P<n>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\) at (?P<rate>\?|[\d.]+)(?P<unit>\w+/s|s/\w+), "
                  r"elapsed (?P<elapsed>\d\d:\d\d), left (?P<left>\?|\d\d:\d\d)$")
"""A ``lines``-mode line: ``embed x: 50/100 (50%) at 1.00text/s, elapsed 00:50, left 00:50``."""
BAR = re.compile(r"(?P<desc>[^\r\n]+?): +(?P<pct>\d+)%\|[^|]*\| (?P<n>\d+)/(?P<total>\d+) "
                 r"\[(?P<elapsed>\d\d:\d\d)<(?P<left>\d\d:\d\d), +(?P<rate>[\d.]+(?:\w+/s|s/\w+))\]")
"""A ``bar``-mode redraw with a known rate and time left: ``embed x:  40%|████      | 2/5 [00:01<00:01,  1.50text/s]``."""
PROGRESS_TEXT = ("text/s", "s/text", "task/s", "s/task", "embed all-MiniLM", "tune CV", "Batches")
"""What progress output looks like; none of it may end up in an executed notebook."""


@pytest.fixture
def progress_env(monkeypatch):
    """A clean progress environment; returns ``set(**vars)``."""
    for key in ("MLSEL_PROGRESS", "MLSEL_PROGRESS_FILE", "MLSEL_PROGRESS_INTERVAL"):
        monkeypatch.delenv(key, raising=False)
    return lambda **kv: [monkeypatch.setenv(k, str(v)) for k, v in kv.items()]


class Clock:
    """tqdm's clock, moved by hand: refresh timing without sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr("tqdm.std.time", c)
    monkeypatch.setattr("tqdm.std.tqdm.monitor_interval", 0)  # no monitor thread redrawing on the real clock
    return c


def _run_bar(clock: Clock, n: int, step_s: float, desc: str = "embed x", unit: str = "text") -> None:
    with progress_bar(n, desc, unit) as bar:
        for _ in range(n):
            clock.t += step_s
            bar.update(1)


def test_lines_mode_writes_one_full_line_per_interval(progress_env, clock, capsys):
    progress_env(MLSEL_PROGRESS="lines", MLSEL_PROGRESS_INTERVAL=10)
    _run_bar(clock, 100, 1.0)
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n")
    lines = err.splitlines()
    # A first line, one per 10 s of the 100 s, and the final line of close().
    assert len(lines) == 1 + 10 + 1, err
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), err
    assert [int(m["n"]) for m in parsed] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100]
    assert all(m["desc"] == "embed x" and m["total"] == "100" for m in parsed)
    assert lines[0] == "embed x: 0/100 (0%) at ?text/s, elapsed 00:00, left ?"
    assert lines[5] == "embed x: 50/100 (50%) at 1.00text/s, elapsed 00:50, left 00:50"
    assert lines[-1] == "embed x: 100/100 (100%) at 1.00text/s, elapsed 01:40, left 00:00"


def test_lines_mode_does_not_flood_and_shows_slow_rates(progress_env, clock, capsys):
    progress_env(MLSEL_PROGRESS="lines")  # the default interval: 30 s
    _run_bar(clock, 20_480, 1 / 1024, desc="tune CV", unit="task")  # 20 s of fast updates: no line but the first and last
    _run_bar(clock, 4, 40.0, desc="benchmark", unit="call")  # slow steps: a line at each, the rate in s/call
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["tune CV: 0/20480 (0%) at ?task/s, elapsed 00:00, left ?",
                         "tune CV: 20480/20480 (100%) at 1024.00task/s, elapsed 00:20, left 00:00"]
    assert lines[2] == "benchmark: 0/4 (0%) at ?call/s, elapsed 00:00, left ?"
    slow = [LINE.match(line) for line in lines[3:]]
    assert [(m["n"], m["pct"], m["rate"] + m["unit"], _seconds(m["elapsed"])) for m in slow] == [
        (str(k), str(25 * k), "40.00s/call", 40 * k) for k in (1, 2, 3, 4, 4)]
    assert [abs(_seconds(m["left"]) - 40 * (4 - k)) <= 1 for m, k in zip(slow, (1, 2, 3, 4, 4))] == [True] * 5  # float rounding


def _seconds(mm_ss: str) -> int:
    minutes, seconds = map(int, mm_ss.split(":"))
    return 60 * minutes + seconds


def test_bar_mode_redraws_in_place_into_the_progress_file(progress_env, clock, tmp_path, capsys):
    channel = tmp_path / "channel"
    progress_env(MLSEL_PROGRESS="bar", MLSEL_PROGRESS_FILE=channel)
    _run_bar(clock, 5, 1.0)
    assert capsys.readouterr().err == ""  # all of it went to the file
    text = channel.read_bytes().decode()  # not read_text: it would turn each "\r" into "\n"
    redraws = text.split("\r")[1:]
    assert len(redraws) == 1 + 5 + 1 and text.endswith("\n") and text.count("\n") == 1
    assert [int(m["n"]) for m in map(BAR.search, redraws[1:])] == [1, 2, 3, 4, 5, 5]
    assert redraws[3].startswith("embed x:  60%|██████    | 3/5 [00:03<00:02,  1.00text/s]")


def test_lines_go_to_the_progress_file_appended(progress_env, clock, tmp_path, capsys):
    channel = tmp_path / "channel"
    channel.write_text("earlier\n")
    progress_env(MLSEL_PROGRESS="lines", MLSEL_PROGRESS_FILE=channel, MLSEL_PROGRESS_INTERVAL=0)
    _run_bar(clock, 3, 1.0)
    assert capsys.readouterr().err == ""
    lines = channel.read_text().splitlines()
    assert lines[0] == "earlier" and [LINE.match(s)["n"] for s in lines[1:]] == ["0", "1", "2", "3", "3"]


def test_off_disabled_unset_and_bad_values(progress_env, monkeypatch, tmp_path, capsys):
    from tqdm.auto import tqdm as auto_tqdm

    progress_env(MLSEL_PROGRESS="off", MLSEL_PROGRESS_FILE=tmp_path / "channel")
    with progress_bar(3, "embed x", "text") as bar:
        bar.update(3)
    progress_env(MLSEL_PROGRESS="lines")
    with progress_bar(3, "embed x", "text", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == "" and not (tmp_path / "channel").exists()
    monkeypatch.delenv("MLSEL_PROGRESS")
    with progress_bar(3, "embed x", "text") as bar:  # unset: tqdm.auto, as in a notebook opened by hand
        assert type(bar) is auto_tqdm
    progress_env(MLSEL_PROGRESS="fancy")
    with pytest.raises(ValueError, match="MLSEL_PROGRESS='fancy'"):
        progress_bar(3, "embed x")
    progress_env(MLSEL_PROGRESS="lines", MLSEL_PROGRESS_INTERVAL="soon")
    with pytest.raises(ValueError, match="MLSEL_PROGRESS_INTERVAL='soon'"):
        progress_bar(3, "embed x")


KERNEL = """
import time
from mlsel.progress import progress_bar
with progress_bar(6, "embed é", "text") as bar:
    for _ in range(6):
        time.sleep(0.05)
        bar.update(1)
"""


def test_relay_copies_a_child_process_bars_to_stderr_and_restores_the_environment(progress_env, capsys):
    """What a process started inside the block (as papermill's kernel is) writes to the channel reaches our stderr."""
    progress_env(MLSEL_PROGRESS_INTERVAL=0.1)
    with runner.progress_relay("train") as channel:
        assert os.environ["MLSEL_PROGRESS"] == "lines"  # pytest's stderr is no terminal
        assert os.environ["MLSEL_PROGRESS_FILE"] == channel and Path(channel).is_file()
        subprocess.run([sys.executable, "-c", KERNEL], check=True, cwd=ROOT)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) >= 3, err
    assert lines[0].startswith("embed é: 0/6 (0%)") and lines[-1].startswith("embed é: 6/6 (100%)")
    assert all(LINE.match(s) for s in lines)
    assert "MLSEL_PROGRESS" not in os.environ and "MLSEL_PROGRESS_FILE" not in os.environ
    assert not Path(channel).exists()


def test_relay_keeps_a_chosen_mode_and_cleans_up_after_a_failure(progress_env, monkeypatch, capsys):
    progress_env(MLSEL_PROGRESS="bar", MLSEL_PROGRESS_FILE="/somewhere/else")
    with pytest.raises(RuntimeError, match="cell failed"):
        with runner.progress_relay("tune") as channel:
            assert os.environ["MLSEL_PROGRESS"] == "bar" and os.environ["MLSEL_PROGRESS_FILE"] == channel
            with open(channel, "ab") as fh:
                fh.write("\rtune CV:  50%|█████     | 1/2".encode())
            raise RuntimeError("cell failed")
    # The bar cut short still ends its line, so the runner's next log line starts on its own.
    assert capsys.readouterr().err == "\rtune CV:  50%|█████     | 1/2\n"
    assert os.environ["MLSEL_PROGRESS"] == "bar" and os.environ["MLSEL_PROGRESS_FILE"] == "/somewhere/else"
    assert not Path(channel).exists()
    monkeypatch.setenv("MLSEL_PROGRESS", "loud")
    with pytest.raises(ValueError, match="MLSEL_PROGRESS='loud'"):
        with runner.progress_relay("tune"):
            pass


def test_relay_reassembles_a_character_split_between_two_reads(tmp_path, capsys):
    channel = tmp_path / "channel"
    channel.write_bytes(b"")
    stop = threading.Event()
    relay = threading.Thread(target=runner._relay, args=(str(channel), stop, 0.01))
    relay.start()
    data = "█ done\n".encode()
    with open(channel, "ab") as fh:
        fh.write(data[:1])
        fh.flush()
        time.sleep(0.2)  # the relay reads the first byte of "█" alone
        fh.write(data[1:])
    stop.set()
    relay.join(5)
    assert capsys.readouterr().err == "█ done\n"


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_the_embedding_bar_moves_per_chunk_and_changes_no_vector(backend, progress_env, embed_cache, capsys):
    """Texts are encoded in chunks of 64 behind the bar, which names the backend; with one text per pass (the default)
    every vector is bit for bit what one call of the encoder over all texts gives."""
    import numpy as np

    from mlsel.features import Embedder

    texts = [f"Question {i}: what is {i} times {i % 7}?" + " Explain." * (i % 5) for i in range(70)]
    progress_env(MLSEL_PROGRESS="lines", MLSEL_PROGRESS_INTERVAL=0)
    embedder = Embedder(cache_dir=embed_cache(), backend=backend)
    vectors = embedder.embed(texts)
    lines = [m for m in map(LINE.match, capsys.readouterr().err.splitlines()) if m]  # not transformers' "Loading weights" bar
    assert [(m["desc"], m["n"], m["total"]) for m in lines] == [(f"embed all-MiniLM-L6-v2 ({backend})", n, "70")
                                                                for n in ("0", "64", "70", "70")]
    whole = embedder._load_encoder()(texts)
    assert vectors.dtype == np.float32 and np.array_equal(vectors, whole.astype(np.float32))


# --------------------------------------------------------------------------- real stage runs through papermill


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A smoke run folder of MMLU-Pro after the prepare stage; the ``-p`` overrides that point at it."""
    run_dir = tmp_path_factory.mktemp("progress-run")
    overrides = {"run_dir": str(run_dir), "report_dir": str(run_dir / "report"), "datasets": ["mmlu_pro"]}
    runner.run(smoke=True, overrides=overrides, stages=["prepare"])
    return run_dir, overrides


def _notebooks_without_progress(run_dir: Path) -> None:
    notebooks = sorted(run_dir.rglob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        outputs = json.dumps([c.get("outputs", []) for c in json.loads(nb.read_text())["cells"]], ensure_ascii=False)
        assert not [t for t in PROGRESS_TEXT if t in outputs], nb


@pytest.mark.slow
def test_runner_relays_periodic_lines_of_a_cold_embedding_without_a_terminal(prepared, progress_env, embed_cache, capsys):
    """``mlsel run`` in CI: the train stage's kernel embeds 600 texts; its lines reach stderr, not the notebook."""
    run_dir, overrides = prepared
    progress_env(MLSEL_CACHE_DIR=embed_cache(), MLSEL_PROGRESS_INTERVAL=1)
    done = runner.run(smoke=True, overrides=overrides, stages=["train"], force=True)
    assert not done["mmlu_pro/train"]["skipped"]
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [m for m in map(LINE.match, err.splitlines()) if m]
    embed = [m for m in lines if m["desc"] == "embed all-MiniLM-L6-v2 (onnx)"]
    assert [embed[0]["n"], embed[-1]["n"], embed[-1]["pct"]] == ["0", "600", "100"], err
    assert all(m["total"] == "600" for m in embed)
    middle = embed[1:-1]
    assert middle, err  # the cold embedding of 600 texts one by one takes several seconds
    assert all(m["rate"] != "?" and m["left"] != "?" for m in middle)
    assert [int(m["n"]) for m in embed] == sorted(int(m["n"]) for m in embed)
    assert len(embed) <= _seconds(embed[-1]["elapsed"]) + 3  # at most one line per interval, plus the first and the last
    _notebooks_without_progress(run_dir)


def _read_pty(cmd: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """Run ``cmd`` with a pseudo-terminal as stdin, stdout and stderr; its exit code and everything it wrote."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.chdir(ROOT)
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    out, deadline = bytearray(), time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", errors="replace")


def _redraws(text: str, desc: str) -> list[re.Match]:
    return [m for m in map(BAR.search, text.split("\r")) if m and m["desc"] == desc]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the command's own limit is 900 s (_read_pty); this one names the test if anything else hangs
def test_mlsel_run_in_a_terminal_shows_moving_bars_for_embedding_and_tuning(prepared, embed_cache):
    """The "done when": a cold ``mlsel run`` in a terminal draws a moving bar, with rate and time left, while it embeds
    and while it tunes; the executed notebooks hold none of it."""
    run_dir, overrides = prepared
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSEL_PROGRESS")}
    env.update(MLSEL_CACHE_DIR=str(embed_cache()), TERM="xterm")
    cmd = [str(Path(sys.executable).with_name("mlsel")), "run", "--smoke", "--stage", "train", "--stage", "tune", "--force",
           "-p", f"run_dir={overrides['run_dir']}", "-p", f"report_dir={overrides['report_dir']}", "-p", "datasets=[mmlu_pro]"]
    code, text = _read_pty(cmd, env, timeout_s=900)
    assert code == 0, text[-3000:]
    for desc, total, min_redraws in (("embed all-MiniLM-L6-v2 (onnx)", "600", 4), ("tune CV", None, 3)):
        redraws = _redraws(text, desc)
        counts = [int(m["n"]) for m in redraws]
        # Moving: several redraws in place, n rising to the total, each with a rate and a time left.
        assert len(set(counts)) >= min_redraws, (desc, text[-3000:])
        assert counts == sorted(counts) and counts[-1] == int(redraws[0]["total"]) and counts[0] < counts[-1]
        assert total is None or redraws[0]["total"] == total
        assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+(text/s|s/text|task/s|s/task)\]", redraws[len(redraws) // 2][0])
    assert "stage train done" in text and "stage tune done" in text
    _notebooks_without_progress(run_dir)
