"""What the tests and benchmarks measure the lookalike engine on: the labelled sets (synthetic
scenes and real photographs, with the copies social media makes of them) and the threshold
calibration. Nothing in the product imports it; it ships so `bench/` and `tests/` run against
an installed Estampille."""
