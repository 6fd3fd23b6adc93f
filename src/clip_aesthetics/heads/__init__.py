"""Embeddings -> scores: head kinds, fitting, published heads, metrics (training and evaluation) and selection."""
