"""Push: STOMP 1.2 over WebSocket, relayed between replicas through Redis (docs/push.md)."""
