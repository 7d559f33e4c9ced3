"""Prometheus metrics of the push endpoint (children bound once: they are hit per delivery)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("annostack_push_connections", "Open push WebSocket connections.")
SUBSCRIPTIONS = Gauge("annostack_push_subscriptions", "Live STOMP subscriptions.")
FRAMES = Counter(
    "annostack_push_frames_total",
    "STOMP frames by direction and command.",
    ["direction", "command"],
)
RELAYED = Counter(
    "annostack_push_relayed_total", "Envelopes received from the Redis relay by this replica."
)
DROPPED = Counter(
    "annostack_push_dropped_total",
    "Messages not delivered to a connection, by reason (queue_full: a slow client).",
    ["reason"],
)
CLOSED = Counter(
    "annostack_push_closed_total",
    "Connections closed, by reason (client, error, auth, rate_limited, forbidden, heartbeat,"
    " expired, revoked).",
    ["reason"],
)

MESSAGES_SENT = FRAMES.labels("out", "MESSAGE")
QUEUE_FULL = DROPPED.labels("queue_full")
