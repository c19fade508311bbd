"""Prometheus metrics of the web process (webhook intake)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOK_DELIVERIES = Counter(
    "openase_webhook_deliveries_total",
    "Webhook deliveries received, by source, event and outcome.",
    ["source", "event", "outcome"],
)
WEBHOOK_ACK_SECONDS = Histogram(
    "openase_webhook_ack_seconds",
    "Time from request received to answer, for webhook deliveries.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
