"""The run manifest (``<run_dir>/manifest.json``) and the provenance it records: the git commit, package versions,
the compute platform, each stage's parameter hash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import mlsel
from mlsel.files import write_atomic
from mlsel.paths import project_root, run_paths


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of ``params`` (first 16 hex digits)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


PACKAGES = ("numpy", "pandas", "scikit-learn", "sentence-transformers", "torch", "onnxruntime", "papermill", "matplotlib", "seaborn",
            "huggingface-hub")


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
