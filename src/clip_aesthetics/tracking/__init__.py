"""The MLflow edge: run logging, the registry, the SQLite store plugin."""
