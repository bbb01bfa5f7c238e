"""Shipping a selector: the per-decision routing config and the router runtime's model files."""
