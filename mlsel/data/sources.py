"""The public data sources: pinned files, checksums, and download-or-mirror.

Every file of the default datasets is checked against a pinned SHA-256 (BFCL's
in :mod:`mlsel.data.bfcl_pins`). The seed's Hugging Face files are not pinned:
they are checked against the digest their cache blob is named by
(:func:`verify_hf_cached`). A local mirror folder
(``MLSEL_DATA_DIR`` or the ``data_dir`` parameter) is read in place;
otherwise the file is downloaded once into the cache, which it enters only
after its size and SHA-256 are checked.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlsel.data.records import DataError
from mlsel.files import sha256_file
from mlsel.paths import cache_dir

log = logging.getLogger(__name__)

_HEX = re.compile(r"[0-9a-f]+")

SEED_HF_REPO = "abdallah1008/ml-selection-benchmark-data"


SEED_HF_FILES = ("benchmark_training_data.jsonl", "validation_benchmark_with_gt.jsonl")


@dataclass(frozen=True)
class SourceFile:
    """One file of a public data source, with its pinned checksum.

    ``relpath`` is the path under the local mirror folder; ``sha256`` is the
    checksum of the file's *content* (for a ``.gz`` mirror copy, of the
    decompressed bytes, which is what the public source serves at ``url``).
    """

    relpath: str
    url: str
    sha256: str


_MMLU_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"


_MMLU_SHA = {
    "Meta-Llama-3_1-70B-Instruct": "26573565138fcd27358a0945c9f525a7d9a75a756689058a0d5bfcbc64fa55cb",
    "Meta-Llama-3_1-8B-Instruct": "d5e76b2564b5baad90892c3664287a51f562a3be792a130acaec458b8560a1cf",
    "Mistral-7B-Instruct-v0.2": "ff1c5ae8a0f6412cca52537746f192476398c24590a3fb79e8f10c300ffa8248",
    "Phi-3-mini-4k-instruct": "7f45083108479ef586cc6c855325294c1220a9fcb614066abf22234a26d7037e",
    "Qwen1.5-7B-Chat": "e1819661f16044ee97734d292c9a7e40f38f9be0aae274642f07943ab69a37b5",
}


MMLU_PRO_MODELS: tuple[str, ...] = (
    "Phi-3-mini-4k-instruct",
    "Mistral-7B-Instruct-v0.2",
    "Meta-Llama-3.1-8B-Instruct",
    "Qwen1.5-7B-Chat",
    "Meta-Llama-3.1-70B-Instruct",
)
"""Model names as used in mlsel (the file names write ``3_1`` for ``3.1``)."""


def _mmlu_file_stem(model: str) -> str:
    return model.replace("3.1", "3_1")


def mmlu_pro_source(model: str) -> SourceFile:
    stem = _mmlu_file_stem(model)
    if stem not in _MMLU_SHA:
        raise DataError(f"mmlu_pro: no pinned source for model {model!r}; known: {list(MMLU_PRO_MODELS)}")
    name = f"model_outputs_{stem}_5shots.zip"
    return SourceFile(
        relpath=f"mmlu-pro-model-outputs/raw_model_outputs/{name}",
        url=f"https://raw.githubusercontent.com/TIGER-AI-Lab/MMLU-Pro/{_MMLU_COMMIT}/eval_results/{name}",
        sha256=_MMLU_SHA[stem],
    )


_LLMROUTER_COMMIT = "4e7a796942ce26e9d5f2b93191c7c2585c99c2e3"


_LLMROUTER_BASE = f"https://raw.githubusercontent.com/ulab-uiuc/LLMRouter/{_LLMROUTER_COMMIT}/data"


LLMROUTER_SOURCES: dict[str, SourceFile] = {
    "scores_train": SourceFile(
        "llmrouter-default-9models/raw/dcrouter_preprocessed/train.json.gz",
        f"{_LLMROUTER_BASE}/dcrouter_preprocessed/train.json",
        "ad3ae70149998f02cbf0dd4557ccb6afcf365ac9391b7371329ffc22201e90e3",
    ),
    "scores_test": SourceFile(
        "llmrouter-default-9models/raw/dcrouter_preprocessed/test.json.gz",
        f"{_LLMROUTER_BASE}/dcrouter_preprocessed/test.json",
        "fbb6d3e3f62c7018e5446d3154cc05812d3124381f774738e9f0bac5bff79c79",
    ),
    "queries_train": SourceFile(
        "llmrouter-default-9models/raw/query_data/default_query_train.jsonl.gz",
        f"{_LLMROUTER_BASE}/example_data/query_data/default_query_train.jsonl",
        "f1b2e3281dc3f9e082016812e1a778ca30e9828c7e58fa0a9f6dc52350ad4b8c",
    ),
    "queries_test": SourceFile(
        "llmrouter-default-9models/raw/query_data/default_query_test.jsonl.gz",
        f"{_LLMROUTER_BASE}/example_data/query_data/default_query_test.jsonl",
        "0fdf4b4236fb81c1a673a01950fb974e02599c83164b0e7832888aefaa490e27",
    ),
    "prices": SourceFile(
        "llmrouter-default-9models/raw/default_llm.json",
        f"{_LLMROUTER_BASE}/example_data/llm_candidates/default_llm.json",
        "278f790564efd758ab28a9b6ce141d3fa057219de9bad40b31562c4286549552",
    ),
}


_ROUTERBENCH_COMMIT = "1963d6874b69c94309ea37a34d7d4cd6f527e7c5"
"""RouterDC commit that last changed ``datasets/routerbench_zs`` (identical at HEAD 0e63989c, 2025-02-25)."""


_ROUTERBENCH_BASE = f"https://raw.githubusercontent.com/shuhao02/RouterDC/{_ROUTERBENCH_COMMIT}/datasets/routerbench_zs"


_ROUTERBENCH_SHA = {
    "arc_challenge_train": "59e044850520be06f74dd9766b9ab4621d783f7fa5269d7dda118b9abb115d78",
    "arc_challenge_test": "7bffb55faca2e1f9d19f7197c652884780a1e0f7fe14bad5b2b1c6afbe7a6769",
    "mbpp_train": "2a985adc3a3016b5ae4d62229722cdff9ece58aa1338206a6b12e4957304452b",
    "mbpp_test": "156fb843b706b765162d74f5fc4928322be5041791b45bd3e1bd732d998c4032",
    "winograde_train": "f6d54caab59bebb9facf3407c515a07a20faf4e75c639b7e91988ceaf312906a",
    "winograde_test": "de7c8689d4b682c860b660988808ee2e40366b12076811e7891081facec4a2e1",
}


ROUTERBENCH_SOURCES: dict[str, SourceFile] = {
    name: SourceFile(f"routerbench-subset-routerdc/raw/{name}.csv.gz", f"{_ROUTERBENCH_BASE}/{name}.csv", sha)
    for name, sha in _ROUTERBENCH_SHA.items()
}
"""RouterBench 0-shot subset as re-split by RouterDC (keys are the file stems; ``winograde`` is upstream's spelling)."""


def fetch(source: SourceFile, data_dir: Path | None = None, cache: Path | None = None) -> Path:
    """Return a verified local path for ``source``.

    With a mirror folder (``data_dir``), the file is read in place from
    ``data_dir / source.relpath`` and nothing is downloaded. Otherwise it is
    downloaded once from ``source.url`` into ``cache/downloads`` (default
    :func:`mlsel.paths.cache_dir`). Either way its SHA-256 must match the
    pinned one. A download enters the cache only after its size and SHA-256
    are checked (:func:`download_verified`); a cached file whose SHA-256 is
    wrong (a bad copy left by an older mlsel) is removed and downloaded again.
    """
    if data_dir is not None:
        path = data_dir / source.relpath
        if not path.is_file():
            raise DataError(f"{path}: not found in the data mirror {data_dir} (expected {source.relpath})")
        got = sha256_file(path, decompress=path.suffix == ".gz")
        if got != source.sha256:
            raise DataError(f"{path}: SHA-256 {got} does not match the pinned {source.sha256} for {source.url}")
        return path
    target = (cache or cache_dir()) / "downloads" / source.url.split("://", 1)[1]
    if target.is_file():
        got = sha256_file(target)
        if got == source.sha256:
            return target
        log.warning("%s: cached SHA-256 %s does not match the pinned %s for %s; removed it, downloading again",
                    target, got, source.sha256, source.url)
        target.unlink(missing_ok=True)
    return download_verified(source.url, target, source.sha256)


def download_verified(url: str, target: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``target`` only if its content has SHA-256 ``sha256``.

    The bytes go to a temporary file beside ``target`` (same folder, so the
    final rename is atomic) while being hashed; the byte count must match the
    server's ``Content-Length`` (when sent) and the digest the expected one.
    Only then is the temporary file renamed to ``target``. On any failure the
    temporary file is removed (nothing enters the cache) and a
    :class:`DataError` names the URL, the file and, for a bad download, the
    expected and actual digests.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got, size, expected_size = _stream(url, out, timeout)
            out.flush()
            os.fsync(out.fileno())
        if expected_size is not None and size != expected_size:
            raise DataError(f"download of {url} is truncated: {size} of {expected_size} bytes (Content-Length); "
                            f"nothing was written to the cache ({target})")
        if got != sha256:
            raise DataError(f"download of {url}: SHA-256 {got} does not match the pinned {sha256} ({size} bytes); "
                            f"nothing was written to the cache ({target})")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _stream(url: str, out, timeout: float) -> tuple[str, int, int | None]:
    """Copy ``url``'s body into ``out``; its SHA-256, byte count and ``Content-Length`` (None if not sent)."""
    h = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except (OSError, http.client.HTTPException) as exc:
        raise DataError(
            f"could not download {url}: {exc}. Offline? Point MLSEL_DATA_DIR "
            "(or the data_dir parameter) at a local mirror folder."
        ) from exc
    return h.hexdigest(), size, int(length) if length and length.isdigit() else None


def download_bytes(url: str, timeout: float = 60.0) -> bytes:
    """The body of ``url`` in memory (for a small file checked by its parsed content, not by a file pin)."""
    buf = io.BytesIO()
    _stream(url, buf, timeout)
    return buf.getvalue()


def fetch_seed_hf(filename: str = SEED_HF_FILES[0], revision: str | None = None, cache: Path | None = None) -> Path:
    """Download one file of the seed's Hugging Face dataset (cached by huggingface_hub).

    Honors ``HF_HUB_OFFLINE=1`` and an existing Hugging Face cache under
    ``cache/hf`` (default :func:`mlsel.paths.cache_dir`). The file is checked
    against the digest its cache blob is named by (:func:`verify_hf_cached`).
    """
    from huggingface_hub import hf_hub_download

    hf_cache = (cache or cache_dir()) / "hf"
    try:
        path = Path(
            hf_hub_download(
                repo_id=SEED_HF_REPO, filename=filename, repo_type="dataset", revision=revision, cache_dir=hf_cache
            )
        )
    except Exception as exc:  # huggingface_hub raises several unrelated types offline
        raise DataError(
            f"could not get {filename} from the Hugging Face dataset {SEED_HF_REPO} (cache {hf_cache}): {exc}"
        ) from exc
    verify_hf_cached(path, f"{SEED_HF_REPO}:{filename}")
    return path


def verify_hf_cached(path: Path, what: str) -> Path:
    """Check a file of a Hugging Face cache against the digest its blob is named by; return ``path``.

    huggingface_hub stores a downloaded file as ``blobs/<etag>`` (the SHA-256
    of an LFS file, the git blob SHA-1 of any other) and links
    ``snapshots/<commit>/<file>`` to it. A blob whose content does not match
    its name is removed with its link (the next run downloads it afresh) and a
    :class:`DataError` names the file and both digests. A file that is no link
    into ``blobs`` (a copy, on file systems without links) has no recorded
    digest and is returned as is.
    """
    if not path.is_symlink():
        return path
    blob = path.resolve()
    expected = blob.name
    if blob.parent.name != "blobs" or not _HEX.fullmatch(expected) or len(expected) not in (40, 64):
        return path
    kind, got = ("SHA-256", sha256_file(blob)) if len(expected) == 64 else ("git blob SHA-1", _git_blob_sha1(blob))
    if got != expected:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise DataError(f"{what}: cached file {path} has {kind} {got}, not the {expected} its blob {blob} is named by; "
                        "removed it from the cache (run again to download a fresh copy)")
    return path


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
