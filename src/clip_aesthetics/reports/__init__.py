"""Galleries, plots and printed tables: pure, returning bytes, figures or text."""
