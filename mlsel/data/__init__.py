"""Outcome data: sources (pinned downloads or a mirror), readers, records, and outcome matrices with splits."""
