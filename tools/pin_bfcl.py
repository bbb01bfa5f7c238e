"""Write ``mlsel/data/bfcl_pins.py``: the SHA-256 of every BFCL file the reader may fetch.

Reads a local mirror of ``bfcl-v2-20240811`` (its tarballs hold the files
byte-identical to their git blobs at the pinned commits) and pins, for each
configuration in ``MODELS``, its twelve result and score files of the
2024-08-11 run and, where that configuration was in the independent
2024-07-25 run, its twelve result files there; plus the twelve question files. Run it again to pin more
configurations::

    python tools/pin_bfcl.py /path/to/mirror/bfcl-v2-20240811
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

from mlsel.data.bfcl import BFCL_CATEGORIES, BFCL_MIRROR, price_values_sha256, question_path, replicate_path, result_path, score_path

MODELS = ("claude-3-5-sonnet-20240620", "gpt-4o-mini-2024-07-18", "gemini-1.5-flash-preview-0514", "gpt-4-turbo-2024-04-09",
          "claude-3-haiku-20240307", "open-mixtral-8x22b", "gpt-3.5-turbo-0125", "command-r-plus")

OUT = Path(__file__).resolve().parents[1] / "mlsel" / "data" / "bfcl_pins.py"


def _digests(tarball: Path, prefix: str, wanted: set[str]) -> dict[str, str]:
    got = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            name = member.name.removeprefix(prefix)
            if member.isfile() and name in wanted:
                got[name] = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
    missing = sorted(wanted - set(got))
    if missing:
        raise SystemExit(f"{tarball}: missing {missing[:3]} ({len(missing)} files)")
    return got


def main(mirror: Path) -> None:
    pins: dict[str, str] = {}
    for kind, path_of in (("result", result_path), ("score", score_path)):
        tarball, prefix = BFCL_MIRROR[kind]
        wanted = {path_of(m, c) for m in MODELS for c in BFCL_CATEGORIES}
        pins.update(_digests(mirror / tarball, prefix, wanted))
    tarball, prefix = BFCL_MIRROR["replicate"]
    with tarfile.open(mirror / tarball, "r:gz") as tar:
        in_run = {name.split("/")[3] for name in tar.getnames() if name.count("/") >= 4}
    replicated = [m for m in MODELS if m in in_run]
    pins.update(_digests(mirror / tarball, prefix, {replicate_path(m, c) for m in replicated for c in BFCL_CATEGORIES}))
    tarball, prefix = BFCL_MIRROR["question"]
    pins.update(_digests(mirror / tarball, prefix, {question_path(c) for c in BFCL_CATEGORIES}))
    prices = mirror / BFCL_MIRROR["prices"][0]
    lines = ['"""SHA-256 of the BFCL files mlsel may fetch (written by ``tools/pin_bfcl.py``; do not edit)."""', "",
             f"PRICES_MIRROR_SHA256 = {hashlib.sha256(prices.read_bytes()).hexdigest()!r}",
             f"PRICE_VALUES_SHA256 = {price_values_sha256(json.loads(prices.read_text()))!r}",
             '"""SHA-256 of the canonical JSON of the price table\'s values (see :func:`mlsel.data.bfcl.price_values_sha256`)."""',
             f"REPLICATE_MODELS = {tuple(replicated)!r}",
             '"""The configurations pinned whose 2024-07-25 run exists (the others were not in that run)."""',
             "", "FILES: dict[str, str] = {"]
    lines += [f"    {path!r}: {digest!r}," for path, digest in sorted(pins.items())]
    lines += ["}", ""]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}: {len(pins)} files")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
