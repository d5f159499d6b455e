"""Publish per-second endpoint metrics to the live stream (/ws/endpoints/{name}/)."""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer

from common.channel_groups import endpoint_group


async def endpoint_metrics_publish(*, endpoint: str, metrics: dict[str, Any]) -> None:
    """Send one per-second metrics message to every socket watching the endpoint (all web processes via the layer)."""
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(endpoint_group(endpoint), {"type": "endpoint.metrics", "metrics": metrics})
