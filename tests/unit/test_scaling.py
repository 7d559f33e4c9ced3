from __future__ import annotations

from annostack.domain.scaling import Stabilizer, recommend, scaled_object
from annostack.domain.tenants import TenantNames, WorkerScaling

SCALING = WorkerScaling(min_replicas=0, max_replicas=5, target_backlog_per_replica=10)


def test_recommendation_follows_the_queue_within_bounds() -> None:
    assert [recommend(b, SCALING) for b in (0, 1, 10, 11, 35, 10_000)] == [0, 1, 1, 2, 4, 5]
    floor = WorkerScaling(min_replicas=2, max_replicas=5)
    assert recommend(0, floor) == 2


def test_up_at_once_down_only_after_the_window() -> None:
    window = Stabilizer()
    assert window.decide(0.0, 4, current=0, window=60) == 4
    assert window.decide(10.0, 1, current=4, window=60) == 4, "inside the window: stay"
    assert window.decide(50.0, 1, current=4, window=60) == 4
    assert window.decide(71.0, 1, current=4, window=60) == 1, "the 4 has left the window"
    assert window.decide(140.0, 0, current=1, window=60) == 0


def test_a_restart_does_not_scale_in_early() -> None:
    assert Stabilizer().decide(0.0, 0, current=3, window=60) == 3


def test_scaled_object_covers_every_processing_topic() -> None:
    manifest = scaled_object(TenantNames(tenant="acme"), SCALING, "http://pulsar:8080")
    topics = [t["metadata"]["topic"] for t in manifest["spec"]["triggers"]]
    assert topics == [
        f"persistent://annostack-acme/processing/{t}"
        for t in ("thumbnails", "pointclouds", "media", "archives", "exports")
    ]
    assert manifest["spec"]["maxReplicaCount"] == 5
