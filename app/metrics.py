"""Prometheus metrics of every process, defined once so names never drift apart."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

READS_RECEIVED = Counter("billing_reads_received_total", "Reads received, by channel", ["channel"])
READS_ACCEPTED = Counter("billing_reads_accepted_total", "Reads accepted and stored", ["channel"])
READS_DUPLICATE = Counter("billing_reads_duplicate_total", "Duplicate reads ignored", ["channel"])
READS_REJECTED = Counter(
    "billing_reads_rejected_total", "Reads rejected, by channel and reason", ["channel", "reason"]
)
DEAD_LETTERS = Counter(
    "billing_dead_letters_total", "Messages sent to the dead-letter topic/table", ["stage"]
)
BATCH_SIZE = Histogram(
    "billing_batch_size",
    "Reads per processed batch",
    ["stage"],
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000),
)
READ_LATENCY = Histogram(
    "billing_read_latency_seconds",
    "From a read's read_at to its storage in PostgreSQL",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 86400),
)
CONSUMER_LAG = Gauge(
    "billing_consumer_lag", "Messages behind the partition end", ["topic", "partition"]
)
CLOSE_DURATION = Histogram(
    "billing_close_duration_seconds",
    "Duration of a monthly close",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
LAST_INGEST = Gauge("billing_last_ingest_timestamp_seconds", "When reads were last stored")
METER_ALERTS_OPEN = Gauge("billing_meter_alerts_open", "Open meter anomaly alerts", ["kind"])
