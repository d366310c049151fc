"""What the benchmark scripts share (``scripts/bench_*.py``), and the Node-RED peer's flows."""
