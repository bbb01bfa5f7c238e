"""Held-out metrics: the paired bootstrap, the results tables, and the cost-quality frontier (zero router, AIQ)."""
