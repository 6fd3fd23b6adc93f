"""One module per entry point: open the run, call the pure code, log what it returned."""
