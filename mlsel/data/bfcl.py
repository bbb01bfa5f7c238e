"""BFCL v2, the 2024-08-11 leaderboard run: per-request correctness, latency, tokens and USD cost.

The Berkeley Function Calling Leaderboard's raw results: 1,700 single-turn
function-calling prompts in 12 BFCL categories, each answered by every model
configuration. For each (prompt, configuration) the reader takes:

``quality``
    1 unless the prompt is listed as a failure in the configuration's score
    file for that category, else 0. A score file's first line is its summary
    (``accuracy``, ``correct_count``, ``total_count``); each later line is one
    failed case: ``id`` (its 1-based position) and, except in ``relevance``,
    also ``prompt.id`` (``simple_13``). The two forms must agree, every failure
    must name a prompt of the category once, ``total_count`` must be the
    number of prompts and ``total_count`` minus the failures must be
    ``correct_count``: otherwise a :class:`DataError` names the file and line.
``latency_s``
    the result line's ``latency``: the wall-clock seconds of that one API
    request as BFCL's client measured it. A latency of exactly 0 is no
    measurement: it becomes the configuration's median measured latency
    (counted as ``repaired.bfcl_zero_latency_filled``), since the selectors'
    utility needs every latency. A missing, negative or non-numeric latency is
    an error.
``cost_usd``
    ``input_token_count`` x input price + ``output_token_count`` x output
    price, with BFCL's own price table (USD per 1M tokens) at the run's
    commit. A configuration of the pool without a price (or listed as
    ``NO_COST_MODELS``) is an error naming it. A missing token count leaves
    the cost NaN (counted as ``repaired.bfcl_missing_token_count``) for the one
    missing-cost rule (:func:`mlsel.data.costs.fill_missing_cost`).
``response_chars``
    the length of the model's raw output (JSON text where it is not a string).
``task``
    the BFCL category (``simple``, ``java``, ``relevance``, ...).
``category``
    :data:`BFCL_TASK_CATEGORY`: ``java``, ``javascript`` and ``rest`` (calls
    written in a programming language's or HTTP's syntax) are ``computer
    science``; the other nine, language-neutral function calls and the
    relevance check, are ``other``.
``query``
    the text the router embeds: the user's request, then the tools offered
    with it (``Tools: name: description; ...``). A router deployed in front of
    a tool-calling endpoint sees both. The request alone is not enough to
    tell the prompts apart: 202 of the 1,700 requests repeat a request of
    another category with other tools (``relevance`` asks the same questions
    with tools that do not fit, where the right answer is no call). Against
    the request alone (``request_text(..., tools=False)``) the tools neither
    help nor hurt the selectors' quality measurably
    (``benchmarks/bench_embed_text.py``), so the distinct text is kept.

Sources: the result and score files of ``HuanzhiMao/BFCL-Result`` at
:data:`RESULT_COMMIT`, the question files of ``ShishirPatil/gorilla`` at
:data:`DATA_COMMIT` and the price table (``eval_runner_helper.py``) at
:data:`PRICE_COMMIT`. Each file is checked against the SHA-256 pinned in
:mod:`mlsel.data.bfcl_pins` (written by ``tools/pin_bfcl.py``); the price
table, a Python file, by the SHA-256 of the values read from it. A local
mirror (``<data_dir>/bfcl-v2-20240811/``) holds the same files inside
tarballs (:data:`BFCL_MIRROR`), read in place.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd

from mlsel.data import bfcl_pins
from mlsel.data.records import OUTCOME_COLUMNS, DataError, DataLog, query_id
from mlsel.data.sources import SourceFile, download_bytes, fetch
from mlsel.files import sha256_file

RESULT_COMMIT = "b4adfc9be5e0c65e8dbb1340c689688eb92a9379"
DATA_COMMIT = "4a64db342cbdb936c27c0016c4186cb5c2426fbb"
PRICE_COMMIT = "de8307b415d5e609be141e38f954a2850be4a4d5"
RUN = "2024-08-11"

BFCL_CATEGORIES: tuple[str, ...] = (
    "simple", "multiple_function", "parallel_function", "parallel_multiple_function", "relevance", "java", "javascript",
    "rest", "executable_simple", "executable_multiple_function", "executable_parallel_function",
    "executable_parallel_multiple_function",
)
"""The 12 BFCL categories of the single-turn run (the data's tasks), in BFCL's order."""

BFCL_TASK_CATEGORY: dict[str, str] = {
    task: "computer science" if task in ("java", "javascript", "rest") else "other" for task in BFCL_CATEGORIES
}

BFCL_DIR = "bfcl-v2-20240811"
"""The mirror's folder under the data directory."""

BFCL_MIRROR: dict[str, tuple[str, str]] = {
    "result": ("BFCL-Result_2024-08-11_result.tar.gz", "BFCL-Result/"),
    "score": ("BFCL-Result_2024-08-11_score.tar.gz", "BFCL-Result/"),
    "question": ("gorilla_bfcl_data_4a64db34.tar.gz", "gorilla/"),
    "prices": ("bfcl_prices_and_metadata_de8307b4.json", ""),
    "replicate": ("REPLICATE_BFCL-Result_2024-07-25_result.tar.gz", "BFCL-Result/"),
}
"""Per kind of file: the mirror's file and the folder its members' repository paths sit under."""

_REPOS = {"result": ("HuanzhiMao/BFCL-Result", RESULT_COMMIT), "score": ("HuanzhiMao/BFCL-Result", RESULT_COMMIT),
          "question": ("ShishirPatil/gorilla", DATA_COMMIT), "prices": ("ShishirPatil/gorilla", PRICE_COMMIT),
          "replicate": ("HuanzhiMao/BFCL-Result", RESULT_COMMIT)}

PRICE_PATH = "berkeley-function-call-leaderboard/eval_checker/eval_runner_helper.py"
PRICE_KEYS = ("INPUT_PRICE_PER_MILLION_TOKEN", "OUTPUT_PRICE_PER_MILLION_TOKEN", "NO_COST_MODELS")


def result_path(model: str, category: str) -> str:
    return f"{RUN}/result/{model}/gorilla_openfunctions_v1_test_{category}_result.json"


def score_path(model: str, category: str) -> str:
    return f"{RUN}/score/{model}/{category}_score.json"


def replicate_path(model: str, category: str) -> str:
    """A result file of the independent 2024-07-25 run (same repository and commit)."""
    return f"2024-07-25/result/{model}/gorilla_openfunctions_v1_test_{category}_result.json"


def question_path(category: str) -> str:
    return f"berkeley-function-call-leaderboard/data/gorilla_openfunctions_v1_test_{category}.json"


def url_of(kind: str, path: str) -> str:
    repo, commit = _REPOS[kind]
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def price_values_sha256(table: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the price table's :data:`PRICE_KEYS` values."""
    values = {key: table.get(key) for key in PRICE_KEYS}
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_price_module(text: str, where: str) -> dict[str, Any]:
    """The literal values of :data:`PRICE_KEYS` assigned at the top of BFCL's ``eval_runner_helper.py`` (never executed)."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise DataError(f"{where}: not valid Python: {exc.msg} (line {exc.lineno})") from None
    table = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in PRICE_KEYS:
                table[node.targets[0].id] = ast.literal_eval(node.value)
    missing = [key for key in PRICE_KEYS if key not in table]
    if missing:
        raise DataError(f"{where}: no literal assignment of {missing}")
    return table


class BfclFiles:
    """BFCL's files, each checked against its pin: from the mirror's tarballs (``data_dir``) or downloaded and cached."""

    def __init__(self, data_dir: Path | None, dlog: DataLog) -> None:
        self.mirror = data_dir / BFCL_DIR if data_dir is not None else None
        self.dlog = dlog

    def where(self, kind: str, path: str) -> str:
        """How errors name a file: the mirror's tarball and member, or the URL."""
        if self.mirror is None:
            return url_of(kind, path)
        tarball, prefix = BFCL_MIRROR[kind]
        return f"{self.mirror / tarball}:{prefix}{path}"

    def get(self, kind: str, paths: list[str]) -> dict[str, bytes]:
        """The verified bytes of each repository path of one kind (``result``, ``score``, ``question``, ``replicate``)."""
        unpinned = [p for p in paths if p not in bfcl_pins.FILES]
        if unpinned:
            raise DataError(f"bfcl: no pinned SHA-256 for {unpinned[0]} ({len(unpinned)} files): only the configurations "
                            "pinned in mlsel/data/bfcl_pins.py can be read (tools/pin_bfcl.py pins more from a mirror)")
        if self.mirror is None:
            return {p: fetch(SourceFile(p, url_of(kind, p), bfcl_pins.FILES[p])).read_bytes() for p in paths}
        tarball, prefix = BFCL_MIRROR[kind]
        path = self.mirror / tarball
        if not path.is_file():
            raise DataError(f"{path}: not found in the data mirror {self.mirror.parent} (expected {BFCL_DIR}/{tarball})")
        self.dlog.inputs[str(path)] = sha256_file(path)
        wanted, got = set(paths), {}
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix(prefix)
                if member.isfile() and name in wanted:
                    got[name] = tar.extractfile(member).read()
        for p in paths:
            if p not in got:
                raise DataError(f"{self.where(kind, p)}: not in the mirror's tarball")
            digest = hashlib.sha256(got[p]).hexdigest()
            if digest != bfcl_pins.FILES[p]:
                raise DataError(f"{self.where(kind, p)}: SHA-256 {digest} does not match the pinned {bfcl_pins.FILES[p]}")
        return got

    def prices(self) -> tuple[dict[str, Any], str]:
        """BFCL's price table (:data:`PRICE_KEYS`) and where it was read; its values' SHA-256 must match the pin."""
        if self.mirror is None:
            where = url_of("prices", PRICE_PATH)
            table = parse_price_module(download_bytes(where).decode("utf-8"), where)
        else:
            path = self.mirror / BFCL_MIRROR["prices"][0]
            where = str(path)
            if not path.is_file():
                raise DataError(f"{path}: not found in the data mirror")
            digest = sha256_file(path)
            if digest != bfcl_pins.PRICES_MIRROR_SHA256:
                raise DataError(f"{path}: SHA-256 {digest} does not match the pinned {bfcl_pins.PRICES_MIRROR_SHA256}")
            self.dlog.inputs[where] = digest
            table = json.loads(path.read_text())
        digest = price_values_sha256(table)
        if digest != bfcl_pins.PRICE_VALUES_SHA256:
            raise DataError(f"{where}: the price values' SHA-256 {digest} does not match the pinned {bfcl_pins.PRICE_VALUES_SHA256}")
        return table, where


def _jsonl(data: bytes, where: str) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        out.append((lineno, rec))
    return out


def request_text(question: Any, functions: Any, where: str, tools: bool = True) -> str:
    """The text embedded for one prompt: the request, then ``Tools: name: description; ...``.

    ``tools=False`` gives the request alone (the same checks): the variant
    ``benchmarks/bench_embed_text.py`` measures against the shipped text.
    """
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: 'question' must be a non-empty string")
    specs = functions if isinstance(functions, list) else [functions]
    if not specs or not all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in specs):
        raise DataError(f"{where}: 'function' must be a function specification (with a 'name') or a list of them")
    if not tools:
        return question.strip()
    return question.strip() + "\n\nTools: " + "; ".join(f"{f['name']}: {str(f.get('description', '')).strip()}" for f in specs)


def read_questions(data: bytes, where: str, tools: bool = True) -> tuple[list[str], list[str]]:
    """A category's prompt ids and request texts (:func:`request_text` with ``tools``), in file order."""
    ids, texts = [], []
    for lineno, rec in _jsonl(data, where):
        if not isinstance(rec.get("id"), str):
            raise DataError(f"{where}:{lineno}: missing 'id'")
        ids.append(rec["id"])
        texts.append(request_text(rec.get("question"), rec.get("function"), f"{where}:{lineno}", tools))
    if len(set(ids)) != len(ids):
        raise DataError(f"{where}: a prompt id appears twice")
    return ids, texts


def failed_prompts(data: bytes, where: str, ids: list[str]) -> set[int]:
    """The positions (0-based) of the failed prompts a score file lists, after its consistency checks."""
    lines = _jsonl(data, where)
    if not lines:
        raise DataError(f"{where}: empty score file")
    head = lines[0][1]
    if not all(isinstance(head.get(k), int) for k in ("correct_count", "total_count")):
        raise DataError(f"{where}:1: expected the summary line with integer 'correct_count' and 'total_count'")
    if head["total_count"] != len(ids):
        raise DataError(f"{where}:1: total_count {head['total_count']} but the category has {len(ids)} prompts")
    position = {pid: i for i, pid in enumerate(ids)}
    failed: set[int] = set()
    for lineno, rec in lines[1:]:
        pos = rec.get("id")
        if not isinstance(pos, int) or isinstance(pos, bool) or not 1 <= pos <= len(ids):
            raise DataError(f"{where}:{lineno}: 'id' must be a prompt's position 1..{len(ids)}, got {pos!r}")
        prompt = rec.get("prompt")
        if prompt is not None:
            pid = prompt.get("id") if isinstance(prompt, dict) else None
            if pid not in position:
                raise DataError(f"{where}:{lineno}: prompt id {pid!r} is not a prompt of this category")
            if pos != position[pid] + 1:
                raise DataError(f"{where}:{lineno}: the two ids disagree: 'id' {pos} but prompt {pid!r} is number {position[pid] + 1}")
        if pos - 1 in failed:
            raise DataError(f"{where}:{lineno}: prompt {ids[pos - 1]!r} (number {pos}) is listed twice")
        failed.add(pos - 1)
    if head["total_count"] - len(failed) != head["correct_count"]:
        raise DataError(f"{where}:1: correct_count {head['correct_count']} but total_count {head['total_count']} minus "
                        f"{len(failed)} listed failures is {head['total_count'] - len(failed)}")
    return failed


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def request_latency(rec: dict[str, Any], where: str) -> float:
    """A result line's ``latency`` in seconds, NaN for a 0 (no measurement); a missing, negative or non-numeric one is an error."""
    lat = rec.get("latency")
    if not isinstance(lat, (int, float)) or isinstance(lat, bool) or not math.isfinite(lat) or lat < 0:
        raise DataError(f"{where}: 'latency' must be a number of seconds >= 0, got {lat!r}")
    return float(lat) if lat > 0 else math.nan


def read_results(data: bytes, where: str, ids: list[str], dlog: DataLog) -> list[tuple[float, float, int | None, int | None]]:
    """Per prompt, in question order: latency in seconds (NaN for a 0, filled by :func:`read_bfcl`), response chars, input and output tokens."""
    lines = _jsonl(data, where)
    if len(lines) != len(ids):
        raise DataError(f"{where}: {len(lines)} results but the category has {len(ids)} prompts")
    out = []
    for (lineno, rec), pid in zip(lines, ids):
        dlog.n_records_read += 1
        if rec.get("id") != pid:
            raise DataError(f"{where}:{lineno}: result for {rec.get('id')!r} where prompt {pid!r} was expected (same order as the questions)")
        lat = request_latency(rec, f"{where}:{lineno}")
        if math.isnan(lat):
            dlog.repaired["bfcl_zero_latency_filled"] += 1
        tokens = _count(rec.get("input_token_count")), _count(rec.get("output_token_count"))
        if None in tokens:
            dlog.repaired["bfcl_missing_token_count"] += 1
        answer = rec.get("result")
        chars = len(answer if isinstance(answer, str) else json.dumps(answer))
        out.append((lat, float(chars), *tokens))
    return out


def model_prices(table: dict[str, Any], where: str, models: list[str]) -> dict[str, tuple[float, float]]:
    """Each model's (input, output) price in USD per 1M tokens; an unpriced model is an error naming it."""
    prices = {}
    for model in models:
        pin, pout = (table["INPUT_PRICE_PER_MILLION_TOKEN"].get(model), table["OUTPUT_PRICE_PER_MILLION_TOKEN"].get(model))
        if model in table["NO_COST_MODELS"] or not all(isinstance(v, (int, float)) and v >= 0 for v in (pin, pout)):
            raise DataError(f"{where}: model {model!r} has no price (input {pin!r}, output {pout!r}): BFCL's price table "
                            "prices hosted models only; choose priced configurations for a pool")
        prices[model] = (float(pin), float(pout))
    return prices


def read_bfcl(models: list[str], data_dir: Path | None = None, dlog: DataLog | None = None) -> pd.DataFrame:
    """Read the 2024-08-11 BFCL run for ``models`` (BFCL's configuration names) into an outcome table."""
    dlog = dlog if dlog is not None else DataLog()
    files = BfclFiles(data_dir, dlog)
    table, price_where = files.prices()
    prices = model_prices(table, price_where, list(models))
    questions = files.get("question", [question_path(c) for c in BFCL_CATEGORIES])
    results = files.get("result", [result_path(m, c) for m in models for c in BFCL_CATEGORIES])
    scores = files.get("score", [score_path(m, c) for m in models for c in BFCL_CATEGORIES])
    rows = []
    for cat in BFCL_CATEGORIES:
        ids, texts = read_questions(questions[question_path(cat)], files.where("question", question_path(cat)))
        for model in models:
            failed = failed_prompts(scores[score_path(model, cat)], files.where("score", score_path(model, cat)), ids)
            where = files.where("result", result_path(model, cat))
            pin, pout = prices[model]
            for i, (lat, chars, tin, tout) in enumerate(read_results(results[result_path(model, cat)], where, ids, dlog)):
                cost = math.nan if tin is None or tout is None else (tin * pin + tout * pout) / 1e6
                rows.append((query_id(texts[i]), texts[i], BFCL_TASK_CATEGORY[cat], model, 0.0 if i in failed else 1.0, lat,
                             chars, cat, cost, f"{where} line {i + 1}"))
    df = pd.DataFrame(rows, columns=[*OUTCOME_COLUMNS, "source_row"])
    holes = df["latency_s"].isna()
    if holes.any():
        median = df.groupby("model")["latency_s"].transform("median")
        unmeasured = sorted(set(df.loc[holes & median.isna(), "model"]))
        if unmeasured:
            raise DataError(f"bfcl: {unmeasured} record a latency of 0 for every request: no measured latency to use")
        df.loc[holes, "latency_s"] = median[holes]
    return df
