"""mlsel: reproducible ML-based LLM model selection.

Given a query, pick which of several LLMs should answer it. The package holds
all logic; the notebooks under ``notebooks/`` only call it. Module layering,
lower never imports higher::

    config -> data -> embed -> selectors -> evaluate -> tune -> report -> stages -> runner -> cli
"""

__version__ = "0.1.0"

CATEGORIES: tuple[str, ...] = (
    "biology",
    "business",
    "chemistry",
    "computer science",
    "economics",
    "engineering",
    "health",
    "history",
    "law",
    "math",
    "other",
    "philosophy",
    "physics",
    "psychology",
)
"""The 14 domain categories, in the fixed order of the one-hot feature block."""
