"""What may be published: secret-looking names, and the one masking function every published file goes through.

:func:`publishable` masks credentials and shows this machine's folders relative to their root; every file written
under a report folder (the page, the notebook pages, the tables) goes through it (:func:`write_published`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from mlsel.files import write_atomic
from mlsel.paths import cache_dir, data_dir, project_root, resolve_path

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
