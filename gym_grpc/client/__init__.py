"""The Python client of gym-grpc."""

from gym_grpc.client.client import GymClient, collect_rollouts_sync
from gym_grpc.protocol.events import (
    CollectionRequest,
    Event,
    Finished,
    GroupDone,
    Heartbeat,
    MetricStats,
    Started,
    Summary,
)
from gym_grpc.tls import tls_credentials

__all__ = [
    "CollectionRequest",
    "Event",
    "Finished",
    "GroupDone",
    "GymClient",
    "Heartbeat",
    "MetricStats",
    "Started",
    "Summary",
    "collect_rollouts_sync",
    "tls_credentials",
]
