"""What may be published: secret-looking names, and the one masking function every published file goes through.

:func:`publishable` masks credentials and shows this machine's folders relative to their root; every file written
under a report folder (the page, the notebook pages, the tables) goes through it (:func:`write_published`, or
:func:`publish_file` for a file copied there or published where it is).

One rule says what a secret is: :func:`is_secret_name`. It decides which parameter values the report's provenance masks,
which stage parameters the runner refuses, and which values :func:`publishable` masks in text (``NAME=value``,
``name: value``, quoted or not, query-string parameters, ``Authorization:`` headers).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from mlsel.files import write_atomic
from mlsel.paths import cache_dir, data_dir, project_root, resolve_path, run_paths

MASK = "***"
"""What a masked credential reads as."""


SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "authorization", "auth", "credential", "credentials",
                          "bearer", "cookie", "signature", "sig"})
"""A parameter whose name has one of these as a word (``api_key``, ``apiKey``, ``X-Api-Key``, ``hf_token``,
``Authorization``, ``X-Amz-Signature``; not ``max_tokens``) holds a secret."""

SECRET_SUFFIXES = ("token", "secret", "password", "passwd", "apikey", "accesskey", "secretkey", "privatekey")
"""A word ending in one of these (``accesstoken``, ``clientsecret``, ``secretkey``, written without a separator) is a secret word too."""

NOT_SECRET_LAST_WORDS = frozenset({"count", "counts", "limit", "len", "length", "size", "budget", "usage", "type", "name", "env", "file",
                                   "path", "url"})
"""A name whose last word is one of these describes a secret without holding one (``token_count``, ``token_limit``,
``api_key_env``, ``key_file``, ``token_url``): it is not a secret name."""


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [w for w in re.split(r"[^A-Za-z]+", spaced.lower()) if w]


def is_secret_name(name: str) -> bool:
    """Whether a parameter, variable or header name reads as a credential: a word of it (split at non-letters and camelCase
    humps) is in :data:`SECRET_WORDS` or ends with one of :data:`SECRET_SUFFIXES`, and its last word is not in
    :data:`NOT_SECRET_LAST_WORDS`. ``OPENAI_API_KEY``, ``aws_secret_access_key``, ``api_token``, ``hfToken``, ``secret``,
    ``Authorization`` are; ``max_tokens``, ``token_count``, ``keys`` are not."""
    words = _words(name)
    if not words or words[-1] in NOT_SECRET_LAST_WORDS:
        return False
    return any(w in SECRET_WORDS or w.endswith(SECRET_SUFFIXES) for w in words)


_DATA_URI = re.compile(r"data:[\w.+-]+/[\w.+-]+;base64,[A-Za-z0-9+/=]+")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"'<>]+@")
_SCHEME = r"(?:Bearer|Basic|Token|Digest)[ \t]+"
_ASSIGNMENT = re.compile(
    r"(?<![\w\-])(?P<q>[\"']?)(?P<name>[A-Za-z_][\w\-]*)(?P=q)"  # a name (an identifier or a header's name), maybe quoted
    r"(?P<sep>[ \t]*(?:=(?!=)|:(?![=/]))[ \t]*)"  # = or : (not ==, :=, ://), on the same line
    r"(?:(?P<vq>[\"'])(?P<qscheme>(?:" + _SCHEME + r")?)(?P<quoted>(?:(?!(?P=vq))[^\n])*)(?P=vq)"  # a quoted value
    r"|(?P<scheme>(?:" + _SCHEME + r")?)(?P<bare>[^\s\"'<>,;&}]+))",  # or up to a space, quote, separator or closing brace
    re.IGNORECASE)
_BEARER = re.compile(r"(\bBearer\s+)[^\s\"',;}&<]+", re.IGNORECASE)
_KEPT_VALUE = re.compile(r"\$\{?\w+\}?|\*\*\*|[\[{(].*", re.DOTALL)
"""Values left as they are: a reference to an environment variable (``${OPENAI_API_KEY}``), the mask, a structure."""
_OUTSIDE_PATH = re.compile(r"(?<![\w.\-/:~$<@%+])/(?:[\w.+\-@%]+/)+[\w.+\-@%]*[\w+\-@%]")
"""An absolute path of two or more parts (not a URL's path, a relative path's tail, a closing tag or ``~/...``)."""
_PLACEHOLDER = re.compile(r"(?:&lt;(?P<escaped>[^<>&\n]+)&gt;|<(?P<raw>[A-Za-z_][\w \-]*)>)$")
_HTML_ELEMENTS = frozenset({"a", "abbr", "b", "bdi", "bdo", "blockquote", "body", "br", "caption", "cite", "code", "dd", "del",
                            "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5",
                            "h6", "head", "header", "html", "i", "ins", "kbd", "label", "legend", "li", "main", "mark", "nav", "ol",
                            "p", "pre", "q", "s", "samp", "section", "small", "span", "strong", "sub", "summary", "sup", "table",
                            "tbody", "td", "tfoot", "th", "thead", "title", "tr", "tt", "u", "ul", "var"})


def _outside_path(m: re.Match[str]) -> str:
    """:func:`outside_path_name` of an absolute path, unless it follows a placeholder (``<run_dir>/data/queries.csv``, also
    HTML-escaped): then it is a path inside that folder and stays as it is."""
    placeholder = _PLACEHOLDER.search(m.string, max(0, m.start() - 80), m.start())
    if placeholder and (placeholder.group("escaped") or placeholder.group("raw").lower() not in _HTML_ELEMENTS):
        return m.group(0)
    return outside_path_name(m.group(0))


def _mask_assignments(text: str) -> str:
    """Each value given to a name :func:`is_secret_name` flags (:data:`_ASSIGNMENT`) made :data:`MASK`; an ``Authorization``
    scheme and the quotes stay. After any other name the search goes on right after it, so ``h:8000/v1?token=...`` still
    finds ``token``."""
    out, pos, start = [], 0, 0
    while (m := _ASSIGNMENT.search(text, start)) is not None:
        quoted = m.group("vq") is not None
        value = m.group("quoted") if quoted else m.group("bare")
        if not is_secret_name(m.group("name")) or not value or _KEPT_VALUE.fullmatch(value):
            start = m.end("name")
            continue
        head = m.group("q") + m.group("name") + m.group("q") + m.group("sep")
        masked = f"{m.group('vq')}{m.group('qscheme')}{MASK}{m.group('vq')}" if quoted else f"{m.group('scheme')}{MASK}"
        out += [text[pos:m.start()], head, masked]
        pos = start = m.end()
    out.append(text[pos:])
    return "".join(out)


def outside_path_name(path: str) -> str:
    """How an absolute path outside this machine's known folders is published: its file name and the first 8 hex digits of
    the SHA-256 of the whole path (``/data/elsewhere/records.jsonl.gz`` -> ``records.jsonl.gz#9e45493f``): which file, and
    whether two mentions are the same file, without the folders it lies in."""
    return f"{Path(path).name}#{hashlib.sha256(path.encode('utf-8', errors='surrogateescape')).hexdigest()[:8]}"


@functools.lru_cache(maxsize=256)
def _recorded_mirror(manifest: str, mtime_ns: int) -> str | None:
    """The ``data_dir`` parameter a run folder's prepare stage recorded in ``manifest`` (as of ``mtime_ns``), if any."""
    try:
        value = json.loads(Path(manifest).read_text())["stages"]["prepare"]["params"]["data_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(value) if value else None


def _mirror_parameters(run_dir: str | os.PathLike[str] | None) -> list[str]:
    """The ``data_dir`` parameter of the run folder ``run_dir`` and of its datasets' folders, as their manifests recorded it."""
    if run_dir is None:
        return []
    root = run_paths(run_dir)["root"]
    manifests = [run_paths(root)["manifest"]] + ([run_paths(d)["manifest"] for d in sorted(root.iterdir()) if d.is_dir()]
                                                 if root.is_dir() else [])
    found = []
    for manifest in manifests:
        try:
            value = _recorded_mirror(str(manifest), manifest.stat().st_mtime_ns)
        except OSError:  # no manifest there
            continue
        if value is not None and value not in found:
            found.append(value)
    return found


def _local_roots(run_dir: str | os.PathLike[str] | None,
                 mirror: str | os.PathLike[str] | None = None) -> tuple[re.Pattern[str], dict[str, str]] | None:
    """One pattern of this machine's folders, longest first (a folder inside another is named by the inner one)."""
    roots: dict[str, str] = {}
    project = project_root()
    mirrors = [resolve_path(v) for v in [*([mirror] if mirror else []), *_mirror_parameters(run_dir)]]  # even where MLSEL_DATA_DIR wins
    named = [(Path(tempfile.gettempdir()), "$TMPDIR"), (Path.home(), "~"), (project, ""), (cache_dir(), "$MLSEL_CACHE_DIR"),
             *((m, "$MLSEL_DATA_DIR") for m in mirrors), (data_dir(), "$MLSEL_DATA_DIR")]
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
    text = _mask_assignments(text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    if roots is None:
        return text

    pattern, labels = roots

    def relative(m: re.Match[str]) -> str:
        label = labels[m.group(1)]
        if m.group(2) == "/":
            return label + "/" if label else ""  # under the project: a relative path
        return label or "."

    return _OUTSIDE_PATH.sub(_outside_path, pattern.sub(relative, text))


def publishable(text: str, run_dir: str | os.PathLike[str] | None = None, local_paths: bool = True,
                data_dir: str | os.PathLike[str] | None = None) -> str:
    """``text`` as it may be published: credentials masked, this machine's folders shown relative to their root.

    The one masking function: every published file goes through it. Masked (each value becomes :data:`MASK`): the user
    info of URLs (``https://user:pw@host``); the value given to any name :func:`is_secret_name` flags, written
    ``NAME=value``, ``name: value`` or ``"name": "value"``, quoted or not, in a query string (``?api_key=...&token=...``)
    or as a header (``X-Api-Key: ...``, ``Authorization: Bearer ...``: the scheme stays); and the token after a bare
    ``Bearer``. A value that is a reference to an environment variable (``${OPENAI_API_KEY}``) stays.
    Absolute paths under the project become relative to it (``runs/default/...``); under the data mirror
    (``MLSEL_DATA_DIR``, the ``data_dir`` parameter given here or recorded in the manifests of ``run_dir`` and its
    datasets' folders), the cache, the run folder ``run_dir`` (when outside the project), the temporary folder or the home
    folder they start with ``$MLSEL_DATA_DIR``, ``$MLSEL_CACHE_DIR``, ``$RUN_DIR``, ``$TMPDIR`` or ``~``. Any other
    absolute path of two or more parts becomes its file name and a digest of the whole path (:func:`outside_path_name`,
    ``records.jsonl.gz#9e45493f``). Embedded ``data:...;base64,`` URIs (figures) are left as they are. Masking twice
    changes nothing more. ``local_paths=False`` masks credentials only (for a part of a page whose paths the page's own
    pass shows relative to its run folder).
    """
    roots = _local_roots(run_dir, data_dir) if local_paths else None
    out, pos = [], 0
    for m in _DATA_URI.finditer(text):
        out += [_mask_plain(text[pos:m.start()], roots), m.group(0)]
        pos = m.end()
    out.append(_mask_plain(text[pos:], roots))
    return "".join(out)


def write_published(path: str | os.PathLike[str], data: str | bytes, run_dir: str | os.PathLike[str] | None = None,
                    data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write a published file atomically, through :func:`publishable`; a file with nothing to mask keeps its bytes."""
    if isinstance(data, bytes):
        text = data.decode("utf-8", errors="surrogateescape")
        masked = publishable(text, run_dir, data_dir=data_dir)
        return write_atomic(path, data if masked == text else masked.encode("utf-8", errors="surrogateescape"))
    return write_atomic(path, publishable(data, run_dir, data_dir=data_dir))


def publish_file(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None, run_dir: str | os.PathLike[str] | None = None,
                 data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Publish the file ``src`` at ``dst`` through :func:`write_published`; without ``dst``, or where ``dst`` is ``src``
    itself (a report folder that is the run folder), it is published in place: masked too, rewritten only if something
    was masked."""
    target = Path(dst) if dst is not None else Path(src)
    data = Path(src).read_bytes()
    if target.exists() and target.resolve() == Path(src).resolve():
        text = data.decode("utf-8", errors="surrogateescape")
        if publishable(text, run_dir, data_dir=data_dir) == text:
            return target
    return write_published(target, data, run_dir, data_dir)
