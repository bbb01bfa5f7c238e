"""Benchmarking LLM endpoints: the OpenAI-compatible client, answer scoring, the code sandbox, the benchmark run."""
