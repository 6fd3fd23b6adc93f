"""The scorer model and its format, and what it scores: files, folders, shards and tables."""
