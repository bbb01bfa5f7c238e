"""Progress bars for long steps: the one place they are made (:func:`progress_bar`).

Stage notebooks run in Jupyter kernels started by papermill, where stderr is
captured into the executed notebook. So ``mlsel run`` (:mod:`mlsel.runner`)
hands each kernel a channel file and relays it to its own stderr: the bars
show live on the terminal and never in the executed notebooks.

Environment variables (read when a bar is made, never at import):

``MLSEL_PROGRESS``
    ``bar``: a tqdm bar redrawn in place with ``\\r`` (for a terminal).
    ``lines``: one full ``\\n``-terminated line per ``MLSEL_PROGRESS_INTERVAL``
    seconds at most, plus a first and a final line, each with the step, n/total,
    percent, rate, elapsed and time left (for CI logs: no ``\\r``, no flood).
    ``off``: nothing. Unset: ``tqdm.auto`` (a widget in JupyterLab, a bar in a
    terminal), as without this module.
``MLSEL_PROGRESS_FILE``
    Append the output to this file instead of stderr (the runner's channel).
``MLSEL_PROGRESS_INTERVAL``
    Seconds between two lines in ``lines`` mode; default 30.
"""

from __future__ import annotations

import os
import sys
from typing import Any

MODES: tuple[str, ...] = ("bar", "lines", "off")
DEFAULT_INTERVAL_S = 30.0
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) at {rate_fmt}, elapsed {elapsed}, left {remaining}"
"""One ``lines``-mode line, e.g. ``embed all-MiniLM-L6-v2: 128/600 (21%) at 25.61text/s, elapsed 00:05, left 00:18``."""


def mode() -> str:
    """The ``MLSEL_PROGRESS`` mode: one of :data:`MODES`, or ``""`` when unset (tqdm.auto)."""
    value = os.environ.get("MLSEL_PROGRESS", "").strip().lower()
    if value and value not in MODES:
        raise ValueError(f"MLSEL_PROGRESS={value!r}: expected one of {MODES} or unset")
    return value


def interval_s() -> float:
    """Seconds between two lines in ``lines`` mode (``MLSEL_PROGRESS_INTERVAL``, default 30)."""
    raw = os.environ.get("MLSEL_PROGRESS_INTERVAL", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"MLSEL_PROGRESS_INTERVAL={raw!r}: expected a number of seconds >= 0")
    return value


class _Sink:
    """A file for tqdm: appends each write to ``path`` (or stderr); with ``lines``, each redraw becomes one line.

    The file is opened per write, so every write reaches the reader at once and
    no handle outlives the bar.
    """

    encoding = "utf-8"  # tqdm draws unicode blocks only for a file that says utf-8

    def __init__(self, path: str, lines: bool) -> None:
        self.path = path
        self.lines = lines

    def write(self, s: str) -> None:
        if self.lines:
            # tqdm redraws as "\r<text><padding>" and ends with "\n" on close: keep the text, one line each, single-spaced
            # (tqdm pads its rate to 5 characters: " 1.00text/s").
            s = " ".join(s.split())
            if not s:
                return
            s += "\n"
        if self.path:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(s)
        else:
            sys.stderr.write(s)

    def flush(self) -> None:
        if not self.path:
            sys.stderr.flush()

    def isatty(self) -> bool:
        return False


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True) -> Any:
    """A tqdm bar over ``total`` steps of ``unit``, labelled ``desc``, in the mode the environment asks for.

    Use it as a context manager (``with progress_bar(...) as bar: bar.update(k)``).
    ``enabled=False`` gives a bar that shows nothing, whatever the mode.
    """
    how = mode()
    if not how:
        from tqdm.auto import tqdm as auto

        return auto(total=total, desc=desc, unit=unit, disable=not enabled)
    from tqdm import tqdm

    if how == "off" or not enabled:
        return tqdm(total=total, desc=desc, unit=unit, disable=True)
    path = os.environ.get("MLSEL_PROGRESS_FILE", "")
    if how == "bar":
        return tqdm(total=total, desc=desc, unit=unit, file=_Sink(path, lines=False) if path else None)
    # miniters=1: tqdm's adaptive miniters could otherwise hold a line back for many intervals.
    return tqdm(total=total, desc=desc, unit=unit, file=_Sink(path, lines=True), mininterval=interval_s(), miniters=1,
                bar_format=LINE_FORMAT)
