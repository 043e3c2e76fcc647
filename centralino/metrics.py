"""Prometheus metrics (served at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

CALLS = Counter("centralino_calls_total", "Calls ended, by line and outcome", ["line", "outcome"])
ACTIVE_CALLS = Gauge("centralino_active_calls", "Calls in progress")
WAITING = Gauge("centralino_queue_waiting", "Callers waiting, by topic", ["topic"])
ARI_REACTION = Histogram(
    "centralino_ari_reaction_seconds",
    "From an ARI event read off the socket to the command it caused being sent",
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
CONFIG_RELOADS = Counter("centralino_config_reloads_total", "Reload attempts", ["result"])
