"""Development tooling of the incident loop: the CLI, the local runner, benchmarks, generators.

Never deployed: the Lambda layer holds `incident_loop` only. This package may import anything
from the dev virtualenv (moto, pgserver, drain3, tqdm, ijson).
"""
