"""One Logger, Metrics and Tracer for the whole package (Powertools)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "incident-loop"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="IncidentLoop", service=SERVICE)
tracer = Tracer(service=SERVICE)
