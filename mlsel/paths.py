"""Where things live: project root, cache, data mirror, run-folder layout, hashing and atomic writes.

Environment variables (read at call time, never at import):

``MLSEL_ROOT``
    The project root. Default: the nearest folder upwards from the working
    directory that holds ``params.yaml``.
``MLSEL_DATA_DIR``
    A local mirror folder of the source data (e.g. ``../shared/data``). Wins
    over the ``data_dir`` parameter.
``MLSEL_CACHE_DIR``
    Downloads and embedding caches. Default ``~/.cache/mlsel``.

What may be published (:func:`publishable`, the one masking function): every file written under a report folder
(the page, the notebook pages, the tables) goes through it (:func:`write_published`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

import mlsel

STAGES: tuple[str, ...] = ("prepare", "benchmark", "train", "evaluate", "tune", "report")
"""Stage names, in run order; each is a section of params.yaml."""


NOTEBOOKS: dict[str, str] = {
    "prepare": "00_prepare_data.ipynb",
    "benchmark": "10_benchmark_models.ipynb",
    "train": "20_train_selectors.ipynb",
    "evaluate": "30_evaluate_selectors.ipynb",
    "tune": "40_tune_selectors.ipynb",
    "report": "90_build_report.ipynb",
}


PUBLISHED_REPORT_DIR = "reports"
"""The published report (relative to the project root): written only by the default run or ``mlsel run --publish``."""


class ConfigError(ValueError):
    """A parameter file or override is invalid."""


def project_root() -> Path:
    """Return the project root folder (holds ``params.yaml``)."""
    env = os.environ.get("MLSEL_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    pkg_parent = Path(__file__).resolve().parent.parent
    if (pkg_parent / "params.yaml").is_file():
        return pkg_parent
    return here


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Resolve ``path`` against the project root unless it is absolute."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else (project_root() / p).resolve()


def cache_dir() -> Path:
    """Folder for downloads and embedding caches, outside the package."""
    env = os.environ.get("MLSEL_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "mlsel"


def data_dir(param_value: str | None = None) -> Path | None:
    """The local data mirror: ``MLSEL_DATA_DIR`` if set, else the parameter, else None."""
    env = os.environ.get("MLSEL_DATA_DIR")
    value = env if env else param_value
    return resolve_path(value) if value else None


def read_yaml(path: str | os.PathLike[str], what: str, error: type[Exception] = ConfigError) -> Any:
    """Parse a YAML file; an unreadable or malformed file raises ``error`` naming the file."""
    p = Path(path)
    try:
        return yaml.safe_load(p.read_text())
    except OSError as exc:
        raise error(f"{p}: cannot read {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{p}: {what} is not valid YAML: {exc}") from None


def params_path() -> Path:
    return project_root() / "params.yaml"


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of ``params`` (first 16 hex digits)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_paths(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The fixed layout of a run folder (the run-folder convention)."""
    root = resolve_path(run_dir)
    return {
        "root": root,
        "data": root / "data",
        "models": root / "models",
        "tables": root / "tables",
        "notebooks": root / "notebooks",
        "benchmark": root / "benchmark",
        "tune": root / "tune",
        "manifest": root / "manifest.json",
    }


def sha256_file(path: Path, decompress: bool = False) -> str:
    """SHA-256 of a file's bytes (of the decompressed bytes if ``decompress``)."""
    h = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_csv(df: pd.DataFrame, path) -> None:
    """Write a tidy CSV deterministically (6 decimals, LF line ends)."""
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(p, index=False, float_format="%.6f", lineterminator="\n")


PACKAGES = ("numpy", "pandas", "scikit-learn", "sentence-transformers", "torch", "papermill", "matplotlib", "seaborn", "huggingface-hub")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_root(), capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "mlsel": mlsel.__version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
"""The instruction sets that decide which float kernels torch and the BLAS take (and so the last bits of a result)."""


def compute_platform() -> dict[str, str]:
    """The CPU and the float kernels a run used: CPU model and flags, torch's kernel level, the BLAS and its core type.

    Two CPUs of one machine kind can give results a few units in the last place
    apart (see the README's "Same answer on another CPU"); this says which kind ran.
    """
    import torch
    from threadpoolctl import threadpool_info

    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name":
                model = val.strip()
            elif key.strip() == "flags":
                flags = set(val.split())
                break
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture') or i.get('threading_layer')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return {"cpu": model, "cpu_flags": " ".join(f for f in CPU_FLAGS if f in flags) or "none of " + " ".join(CPU_FLAGS),
            "torch_cpu_capability": f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()}",
            "blas": "; ".join(blas) or "unknown",
            "kernel_overrides": " ".join(f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE") if k in os.environ) or "none"}


def update_manifest(run_dir: str, stage: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Merge one stage's entry into ``<run_dir>/manifest.json`` and return the manifest."""
    path = run_paths(run_dir)["manifest"]
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(path.read_text()) if path.is_file() else {"stages": {}}
    manifest["git_commit"] = _git_commit()
    manifest["package_versions"] = package_versions()
    manifest["platform"] = compute_platform()
    manifest["stages"][stage] = entry
    write_atomic(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return manifest


def read_manifest(run_dir: str) -> dict[str, Any]:
    path = run_paths(run_dir)["manifest"]
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file in the same folder and a rename.

    The one atomic write of the package: a reader never sees a half-written
    file, and a crash leaves the previous file whole.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    return p



# --------------------------------------------------------------------------- what may be published

MASK = "***"
"""What a masked credential reads as."""

SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "authorization", "auth", "credential", "credentials",
                          "bearer", "cookie"})
"""A parameter whose name has one of these as a word (``api_key``, ``apiKey``, ``X-Api-Key``, ``hf_token``,
``Authorization``; not ``max_tokens``) holds a secret."""


def is_secret_name(name: str) -> bool:
    """Whether a parameter or header name reads as a credential: a word of it (split at non-letters and
    camelCase humps) is in :data:`SECRET_WORDS`."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return bool({w for w in re.split(r"[^A-Za-z]+", spaced.lower()) if w} & SECRET_WORDS)


_DATA_URI = re.compile(r"data:[\w.+-]+/[\w.+-]+;base64,[A-Za-z0-9+/=]+")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"'<>]+@")
_URL_SECRET_PARAM = re.compile(r"([?&][^=&\s#\"'<>]*?(?:key|token|secret|password|passwd|signature|sig|auth)[^=&\s#\"'<>]*=)[^&\s#\"'<>]+",
                               re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(\b(?:Proxy-)?Authorization[\"']?\s*[:=]\s*[\"']?(?:(?:Bearer|Basic|Token|Digest)\s+)?)[^\s\"',;}&<]+",
                          re.IGNORECASE)
_SECRET_HEADER = re.compile(r"(\b(?:X-)?(?:api[-_]?key|access[-_]?token|auth[-_]?token|hf[-_]?token|client[-_]?secret|secret[-_]?key|"
                            r"password|passwd)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&<]+", re.IGNORECASE)
_BEARER = re.compile(r"(\bBearer\s+)[^\s\"',;}&<]+", re.IGNORECASE)


def _local_roots(run_dir: str | os.PathLike[str] | None) -> tuple[re.Pattern[str], dict[str, str]] | None:
    """One pattern of this machine's folders, longest first (a folder inside another is named by the inner one)."""
    roots: dict[str, str] = {}
    project = project_root()
    named = [(Path(tempfile.gettempdir()), "$TMPDIR"), (Path.home(), "~"), (project, ""), (cache_dir(), "$MLSEL_CACHE_DIR"),
             (data_dir(), "$MLSEL_DATA_DIR")]
    if run_dir is not None and not resolve_path(run_dir).is_relative_to(project):
        named.append((resolve_path(run_dir), "$RUN_DIR"))  # a run folder inside the project is named from the project
    for folder, label in named:
        if folder is None:
            continue
        for variant in {str(folder), str(Path(folder).resolve())}:
            if len(variant.rstrip("/")) > 1:
                roots[variant.rstrip("/")] = label
    if not roots:
        return None
    alternatives = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True))
    return re.compile(rf"(?<![\w.\-])({alternatives})(/|(?![\w.\-])|(?=\.(?:\s|$)))"), roots


def _mask_plain(text: str, roots: tuple[re.Pattern[str], dict[str, str]] | None) -> str:
    text = _URL_USERINFO.sub(MASK + "@", text)
    text = _URL_SECRET_PARAM.sub(lambda m: m.group(1) + MASK, text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
    text = _SECRET_HEADER.sub(lambda m: m.group(1) + MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    if roots is None:
        return text

    pattern, labels = roots

    def relative(m: re.Match[str]) -> str:
        label = labels[m.group(1)]
        if m.group(2) == "/":
            return label + "/" if label else ""  # under the project: a relative path
        return label or "."

    return pattern.sub(relative, text)


def publishable(text: str, run_dir: str | os.PathLike[str] | None = None, local_paths: bool = True) -> str:
    """``text`` as it may be published: credentials masked, this machine's folders shown relative to their root.

    The one masking function: every published file goes through it. Masked: the user info of URLs
    (``https://user:pw@host``), query parameters named like a credential (``api_key=``, ``key=``, ``token=``),
    ``Authorization:`` headers, ``Bearer`` tokens and ``X-Api-Key``-style headers (each value becomes :data:`MASK`).
    Absolute paths under the project become relative to it (``runs/default/...``); under the data mirror, the cache, the
    run folder ``run_dir`` (when outside the project), the temporary folder or the home folder they start with
    ``$MLSEL_DATA_DIR``, ``$MLSEL_CACHE_DIR``, ``$RUN_DIR``, ``$TMPDIR`` or ``~``. Other paths stay. Embedded
    ``data:...;base64,`` URIs (figures) are left as they are. Masking twice changes nothing more. ``local_paths=False``
    masks credentials only (for a part of a page whose paths the page's own pass shows relative to its run folder).
    """
    roots = _local_roots(run_dir) if local_paths else None
    out, pos = [], 0
    for m in _DATA_URI.finditer(text):
        out += [_mask_plain(text[pos:m.start()], roots), m.group(0)]
        pos = m.end()
    out.append(_mask_plain(text[pos:], roots))
    return "".join(out)


def write_published(path: str | os.PathLike[str], data: str | bytes, run_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write a published file atomically, through :func:`publishable`; a file with nothing to mask keeps its bytes."""
    if isinstance(data, bytes):
        text = data.decode("utf-8", errors="surrogateescape")
        masked = publishable(text, run_dir)
        return write_atomic(path, data if masked == text else masked.encode("utf-8", errors="surrogateescape"))
    return write_atomic(path, publishable(data, run_dir))
