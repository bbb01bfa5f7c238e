"""Choosing a model per query: the tie rule and utility, the classic selectors, baselines, cost-aware routers, and the one factory."""
