"""Peers' matrix-factorisation routers: LLMRouter's bilinear MF and EmbedLLM's TextMF.

Both learn one latent vector per model and a linear projection of the query
embedding into the same space, and score a (query, model) pair through their
elementwise product; they differ in what they are trained on (LLMRouter:
pairs of the query's best model against each other model; EmbedLLM: each
model's correctness on each query). The code is ours (PyTorch on the CPU),
following each source at the commit its docstring names, with its defaults;
``docs/peers/routerbench_llmrouter.md`` has the notes from reading them. They
are registered with the other peers in :mod:`mlsel.selection.peers`.

Fits are seeded and deterministic: the initial weights, the shuffles and the
noise come from ``random_state`` (the global torch and numpy random states are
left as they were), and torch runs on one thread while fitting and scoring,
so the same input gives the same weights and choices. Ties: the suite's rule
(:func:`mlsel.selection.base.choose`; both sources take the lowest model index).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from mlsel.selection.base import QUALITY_WEIGHT, SEED, Selector, choose

LLMROUTER = "ulab-uiuc/LLMRouter@4e7a796942ce26e9d5f2b93191c7c2585c99c2e3"
EMBEDLLM = "richardzhuang0412/EmbedLLM@9b276305af1342188c2fc066e41d5dc8bdfea895"


@contextmanager
def _torch_session(seed: int):
    """One torch thread and a private random state seeded with ``seed``; both restored on exit."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield torch
    finally:
        torch.set_num_threads(threads)


def _batches(n: int, size: int, order: np.ndarray | None = None):
    """Row indices in consecutive batches of ``size`` (the last one shorter), in ``order`` if given."""
    idx = np.arange(n) if order is None else order
    for start in range(0, n, size):
        yield idx[start:start + size]


class LLMRouterMF(Selector):
    """LLMRouter's MF router (``llmrouter/models/mfrouter/router.py`` and ``trainer.py``, {LLMROUTER}).

    Bilinear MF: a model's score for a query is ``delta(M, q) = w . (normalize(P_M) * (W q))``
    with ``P`` an ``nn.Embedding(n_models, 128)``, ``W`` a ``Linear(d, 128, bias=False)``
    text projection and ``w`` a ``Linear(128, 1, bias=False)`` (PyTorch's default
    initialisation). Training pairs: for each query its best model (the winner)
    against **every** other model, equal scores included, so an all-right or
    all-wrong query still teaches its winner over the rest; the loss is
    ``BCEWithLogits(delta(win, q) - delta(loss, q), 1)``; Adam, learning rate
    ``1e-3``, no weight decay, ``epochs = 5`` (``configs/model_config_train/mfrouter.yaml``;
    the code's fallback is 3), the pairs reshuffled every epoch; ``noise_alpha``
    0 (no noise on the projected query). The choice is the argmax of ``delta``.
    Deviations: the winner is the suite's tie rule (:func:`mlsel.selection.base.choose`;
    LLMRouter takes the first row of the best score in its file); the query
    embedding is the suite's embedder (LLMRouter: Longformer, 768-d); and the
    source takes one Adam step per pair (batch size 1), 400,000 steps for 10,000
    queries x 9 models, about half an hour on two shared CPU cores, so ours
    averages the loss over mini-batches of ``batch_size = 64`` pairs (``batch_size=1``
    is the source's schedule).
    """

    def __init__(self, dim: int = 128, lr: float = 1e-3, epochs: int = 5, batch_size: int = 64, random_state: int = SEED,
                 quality_weight: float = QUALITY_WEIGHT):
        self.dim = dim
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.quality_weight = quality_weight

    def _pairs(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, winner, loser) per training pair: each query's winner against every other model."""
        n, m = u.shape
        win = choose(u, self.rank_)
        rows = np.repeat(np.arange(n), m)
        lose = np.tile(np.arange(m), n)
        keep = lose != win[rows]
        return rows[keep], win[rows[keep]], lose[keep]

    def _fit(self, X, u):
        rng = np.random.default_rng(self.random_state)
        qi, win, lose = self._pairs(u)
        with _torch_session(self.random_state) as torch:
            P = torch.nn.Embedding(u.shape[1], self.dim)
            proj = torch.nn.Linear(X.shape[1], self.dim, bias=False)
            clf = torch.nn.Linear(self.dim, 1, bias=False)
            opt = torch.optim.Adam([*P.parameters(), *proj.parameters(), *clf.parameters()], lr=self.lr)
            loss_fn = torch.nn.BCEWithLogitsLoss()
            Xt, wt, lt = torch.tensor(X), torch.from_numpy(win), torch.from_numpy(lose)
            for _ in range(self.epochs):
                for b in _batches(len(qi), self.batch_size, rng.permutation(len(qi))):
                    bt = torch.from_numpy(b)
                    h = torch.nn.functional.normalize(P(wt[bt]), dim=-1) - torch.nn.functional.normalize(P(lt[bt]), dim=-1)
                    logit = clf(h * proj(Xt[torch.from_numpy(qi[b])])).squeeze(-1)
                    loss = loss_fn(logit, torch.ones_like(logit))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            self.model_embeddings_ = P.weight.detach().numpy().copy()
            self.text_proj_ = proj.weight.detach().numpy().copy()
            self.classifier_ = clf.weight.detach().numpy()[0].copy()

    def decision_scores(self, X):
        """``delta(M, q)`` per (query, model): ``w . (normalize(P_M) * (W q))``, shape (n, m)."""
        P = self.model_embeddings_ / np.maximum(np.linalg.norm(self.model_embeddings_, axis=1, keepdims=True), 1e-12)
        q = np.asarray(X, dtype=np.float64) @ self.text_proj_.T.astype(np.float64)
        return q @ (P * self.classifier_[None, :]).T.astype(np.float64)


class EmbedLLMMF(Selector):
    """EmbedLLM's matrix factorisation (``algorithm/mf.py``, ``TextMF``, {EMBEDLLM}).

    Learned model embeddings against the query embeddings: ``logits = C(P_M * T(q))``
    with ``P`` an ``nn.Embedding(n_models, 232)``, ``T`` a ``Linear(d, 232)`` text
    projection and ``C`` a ``Linear(232, 2)`` (both with bias; PyTorch's default
    initialisation), trained to predict each model's correctness on each query
    with ``CrossEntropyLoss``; while training, Gaussian noise of scale
    ``alpha = 0.05`` is added to the query embedding before the projection.
    Adam, learning rate ``1e-4``, ``weight_decay = 1e-5``, batch size 2048,
    ``epochs = 50``, no shuffling (the source's ``DataLoader(shuffle=False)``; here
    the (query, model) rows run query by query, models in order). A model's
    routing score is ``logit[1] - logit[0]``, the choice its argmax (the script's
    defaults and its ``router`` evaluation). Deviations: the query embedding is
    the suite's embedder (EmbedLLM: all-mpnet-base-v2, 768-d); and where the
    utility is graded rather than 0/1 the target is the soft label
    ``(1 - u, u)``, which is the source's loss when ``u`` is 0 or 1 (``u`` is
    clipped to [0, 1]).
    """

    def __init__(self, dim: int = 232, alpha: float = 0.05, lr: float = 1e-4, weight_decay: float = 1e-5, batch_size: int = 2048,
                 epochs: int = 50, random_state: int = 42, quality_weight: float = QUALITY_WEIGHT):
        self.dim = dim
        self.alpha = alpha
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.random_state = random_state
        self.quality_weight = quality_weight

    def _fit(self, X, u):
        n, m = u.shape
        target = np.clip(u, 0.0, 1.0).reshape(-1)
        target = np.column_stack([1.0 - target, target]).astype(np.float32)
        rows, models = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
        with _torch_session(self.random_state) as torch:
            P = torch.nn.Embedding(m, self.dim)
            proj = torch.nn.Linear(X.shape[1], self.dim)
            clf = torch.nn.Linear(self.dim, 2)
            opt = torch.optim.Adam([*P.parameters(), *proj.parameters(), *clf.parameters()], lr=self.lr,
                                   weight_decay=self.weight_decay)
            loss_fn = torch.nn.CrossEntropyLoss()
            Xt, tt = torch.tensor(X), torch.from_numpy(target)
            for _ in range(self.epochs):
                for b in _batches(len(rows), self.batch_size):
                    q = Xt[torch.from_numpy(rows[b])]
                    q = q + torch.randn_like(q) * self.alpha
                    logits = clf(P(torch.from_numpy(models[b])) * proj(q))
                    loss = loss_fn(logits, tt[torch.from_numpy(b)])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            self.model_embeddings_ = P.weight.detach().numpy().copy()
            self.text_proj_ = (proj.weight.detach().numpy().copy(), proj.bias.detach().numpy().copy())
            self.classifier_ = (clf.weight.detach().numpy().copy(), clf.bias.detach().numpy().copy())

    def decision_scores(self, X):
        """``logit[1] - logit[0]`` per (query, model), shape (n, m); no noise."""
        (Wt, bt), (Wc, bc) = self.text_proj_, self.classifier_
        q = np.asarray(X, dtype=np.float64) @ Wt.T.astype(np.float64) + bt
        w, b = (Wc[1] - Wc[0]).astype(np.float64), float(bc[1] - bc[0])
        return q @ (self.model_embeddings_ * w[None, :]).T.astype(np.float64) + b


for _cls in (LLMRouterMF, EmbedLLMMF):
    _cls.__doc__ = _cls.__doc__.format(LLMROUTER=LLMROUTER, EMBEDLLM=EMBEDLLM)
