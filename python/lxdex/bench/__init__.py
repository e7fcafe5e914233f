"""Benchmarks: workload generators and drivers (`lxdex bench ...`).

Every figure is measured on the machine it runs on; nothing is hard-coded
or extrapolated. BENCHMARKS.md records the figures with their commands."""
