"""Figures: call-centre indicators from the queue_log stream (compute, pure) and their HTTP
API and Prometheus gauges (http)."""
