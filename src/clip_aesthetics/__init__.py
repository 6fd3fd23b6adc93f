"""clip-aesthetics: CLIP embeddings of AVA -> aesthetic-score heads, tracked, compared and served with MLflow."""

__version__ = "0.1.0"
