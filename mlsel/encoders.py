"""The text encoders behind the embedding cache: a sentence-transformers model run by torch or by ONNX Runtime.

Backends (the ``embed_backend`` parameter):

- ``torch``: ``SentenceTransformer.encode``, ``batch_size`` texts per forward pass.
- ``onnx`` (the default): the same loaded model exported once with ``torch.onnx.export``, the model's own
  modules after the transformer (pooling, normalisation, any dense layer) inside the graph, run by
  ONNX Runtime one text per pass. Its vectors equal torch's to float rounding (cosine 1.000000 on
  all-MiniLM-L6-v2) and come faster: 1.2x to 1.9x torch's rate on 2 CPU cores, more on a busy machine
  (``benchmarks/results/embed.md``).
- ``onnx_int8``: that graph with its MatMul weights quantised to int8, per output channel, activations
  quantised per pass (ONNX Runtime's dynamic quantisation). Faster again, and the vectors move
  (cosine ~0.99 to torch): an opt-in, measured against routing quality in ``benchmarks/bench_embed.py``.

Tokenising is the model's own (``SentenceTransformer.preprocess``: its tokenizer, its maximum
sequence length, its text stripping), so every backend sees the same token ids.

An exported graph is cached under ``<cache_dir>/onnx/<model slug>-<key>/``, where the key is a
SHA-256 over the weights, the modules' configuration, and the torch, onnx and ONNX Runtime
versions: new weights or a new exporter export again; the same ones load the file. A model that
cannot be exported falls back to torch; :attr:`EncoderInfo.fallback` says why, the log says it,
and the train stage's manifest records it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

Backend = Literal["onnx", "onnx_int8", "torch"]
BACKENDS: tuple[str, ...] = ("onnx", "onnx_int8", "torch")
ONNX_OPSET = 18
"""ONNX opset of the exported graph."""


def slug(model_id: str) -> str:
    """A model id as a folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model_id)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def weights_digest(model: Any) -> str:
    """SHA-256 over a loaded model's parameters and buffers (names, dtypes, shapes, bytes) and its modules' configuration."""
    import torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes() if t.numel() else b"")
    modules = [(type(m).__name__, m.get_config_dict() if hasattr(m, "get_config_dict") else {}) for m in model]
    h.update(json.dumps({"modules": modules, "max_seq_length": model.max_seq_length}, sort_keys=True, default=str).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class EncoderInfo:
    """What encoded the texts: for the manifest and the cache folder."""

    asked: str
    """The backend the parameters asked for."""
    backend: str
    """The backend that encoded: ``asked``, or ``torch`` after a failed export."""
    fallback: str = ""
    """Why ``backend`` differs from ``asked`` (empty when it does not)."""
    graph: str = ""
    """The ONNX file that encoded, relative to the cache folder (empty for torch, or when every text came from the cache)."""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _input_names(model: Any) -> list[str]:
    """The tokenizer's outputs that the transformer takes, in a fixed order."""
    features = model.preprocess(["a"])
    return [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features]


def export_onnx(model: Any, path: Path) -> Path:
    """Export a loaded ``SentenceTransformer`` (every module: transformer, pooling, normalisation) to ``path``.

    The graph takes the tokenizer's ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where
    the tokenizer gives them) of shape (batch, tokens) and returns ``sentence_embedding`` (batch, dim).
    Written atomically: a killed export leaves no file.
    """
    import torch

    names = _input_names(model)

    class _Graph(torch.nn.Module):
        def __init__(self, st: Any) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.st(dict(zip(names, tensors)))["sentence_embedding"]

    example = model.preprocess(["an example text to trace the graph with"])
    args = tuple(example[k] for k in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / path.name
        # The tracer warns of values it keeps constant (the mask's length equals the tokens'; no causal mask): true of
        # every input here, and the tests compare the graph with torch on texts of every length, truncated ones included.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Graph(model).eval(), args, str(out), input_names=names, output_names=["sentence_embedding"],
                              dynamic_axes={k: {0: "batch", 1: "tokens"} for k in names}, opset_version=ONNX_OPSET, dynamo=False)
        out.replace(path)
    return path


def quantize_int8(src: Path, dst: Path) -> Path:
    """int8 MatMul weights, one scale per output channel; activations quantised per pass (dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        out = Path(tmp) / dst.name
        logging.disable(logging.WARNING)  # the quantiser logs every tensor it leaves alone to the root logger
        try:
            quantize_dynamic(str(src), str(out), per_channel=True, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        out.replace(dst)
    return dst


def onnx_graph(model: Any, model_id: str, cache_root: Path, backend: Backend) -> Path:
    """The cached ONNX file of ``model`` for ``backend`` (``onnx`` or ``onnx_int8``), exported on first use."""
    key = hashlib.sha256(json.dumps({"weights": weights_digest(model), "opset": ONNX_OPSET, **_versions()},
                                    sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_root / "onnx" / f"{slug(model_id)}-{key}"
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        log.info("exporting embedder %s to ONNX (%s)", model_id, fp32)
        export_onnx(model, fp32)
        (folder / "versions.json").write_text(json.dumps(_versions(), indent=1) + "\n")
    if backend == "onnx":
        return fp32
    int8 = folder / "model-int8.onnx"
    if not int8.is_file():
        log.info("quantising %s to int8 (%s)", model_id, int8)
        quantize_int8(fp32, int8)
    return int8


class OnnxEncoder:
    """One text per ONNX Runtime pass, tokenised by the model's own ``preprocess``; rows L2-normalised (n, dim) float32."""

    def __init__(self, model: Any, graph: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.model = model
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            features = self.model.preprocess([text])
            out.append(self.session.run(None, {k: features[k].numpy() for k in self.inputs})[0][0])
        vecs = np.asarray(out, dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return (vecs / np.maximum(norms, 1e-12)).astype(np.float32)


class TorchEncoder:
    """``SentenceTransformer.encode`` with ``batch_size`` texts per pass, normalised rows (n, dim) float32."""

    def __init__(self, model: Any, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True,
                                 normalize_embeddings=True).astype(np.float32)


def make_encoder(model: Any, model_id: str, backend: Backend, batch_size: int, cache_root: Path) -> tuple[Any, EncoderInfo]:
    """The encoder for ``backend``, or torch with the reason when the model does not export (logged as a warning)."""
    if backend == "torch":
        return TorchEncoder(model, batch_size), EncoderInfo(backend, "torch")
    if str(getattr(model, "device", "cpu")) != "cpu":
        reason = f"the ONNX backend runs on the CPU and the model is on {model.device}"
    else:
        try:
            graph = onnx_graph(model, model_id, cache_root, backend)
            return OnnxEncoder(model, graph), EncoderInfo(backend, backend, graph=graph.relative_to(cache_root).as_posix())
        except Exception as exc:  # any failure to export or load the graph: torch still encodes
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    log.warning("embedder %s: embed_backend %s is not available (%s); encoding with torch", model_id, backend, reason)
    return TorchEncoder(model, batch_size), EncoderInfo(backend, "torch", fallback=reason)
