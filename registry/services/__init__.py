"""The registry's work, one module per sub-domain (STYLE 18).

versions: models and versions from uploads, inspection in the worker; jobs: the job lifecycle; conversions:
conversion jobs and the parity override; parity: the check that a converted model answers like its parent;
benchmarks: benchmark jobs. The conversion steps themselves are in registry/converters.py; the child processes
that load a version before it becomes ready and that benchmark it are registry/load_check.py and registry/benchmark.py.
"""
