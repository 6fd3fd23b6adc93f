"""Embeddings -> scores: head kinds, fitting, published heads, metrics and selection."""
