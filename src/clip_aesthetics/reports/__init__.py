"""Galleries and plots: pure, returning bytes or figures."""
