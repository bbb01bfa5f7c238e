"""Benchmarking LLM endpoints: ``client`` (OpenAI-compatible calls, models.yaml), ``queries``, ``scoring`` and ``answers``, the code ``sandbox``, the ``benchmark`` run and its CLI ``commands``."""
