"""Prometheus metrics of an edge node, collected on scrape from the live objects.

A custom collector reads the node's pipelines and sessions when `/metrics` is fetched, so the
hot path keeps plain counters and nothing is updated per frame for the sake of metrics. Each app
gets its own registry: several edges in one process (tests) do not collide.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from cloudphone.edge import rtcp_arrival
from cloudphone.edge.loop_monitor import LoopLagMonitor
from cloudphone.edge.node import EdgeNode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EdgeCollector(Collector):
    def __init__(self, node: EdgeNode, loop_lag: LoopLagMonitor) -> None:
        self._node = node
        self._loop_lag = loop_lag

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        node = self._node
        yield GaugeMetricFamily("cloudphone_sessions", "Live viewer sessions", len(node.sessions))
        yield GaugeMetricFamily(
            "cloudphone_pipelines", "Phones with a pipeline", len(node.pipelines)
        )
        viewers = GaugeMetricFamily("cloudphone_viewers", "Viewers per phone", labels=["phone"])
        encoders = GaugeMetricFamily("cloudphone_encoders", "Running encoders", labels=["phone"])
        frames = CounterMetricFamily(
            "cloudphone_frames_in", "Pictures from the guest", labels=["phone"]
        )
        encoded = CounterMetricFamily(
            "cloudphone_frames_encoded", "Pictures encoded", labels=["phone", "codec"]
        )
        dropped = CounterMetricFamily(
            "cloudphone_frames_skipped",
            "Pictures replaced while the encoder was busy (newest wins)",
            labels=["phone", "codec"],
        )
        sent = CounterMetricFamily(
            "cloudphone_bytes_out", "Encoded bytes fanned out", labels=["phone", "codec"]
        )
        encode_ms = GaugeMetricFamily(
            "cloudphone_encode_milliseconds", "Encode time (EWMA)", labels=["phone", "codec"]
        )
        for phone, pipeline in node.pipelines.items():
            stats = pipeline.stats()
            viewers.add_metric([phone], pipeline.viewers)
            encoders.add_metric([phone], pipeline.active_encoders)
            frames.add_metric([phone], pipeline.frames_in)
            streams = stats["streams"]
            assert isinstance(streams, dict)
            for codec, entry in streams.items():
                sent.add_metric([phone, codec], entry["bytesOut"])
                if "framesEncoded" in entry:
                    encoded.add_metric([phone, codec], entry["framesEncoded"])
                    dropped.add_metric([phone, codec], entry["framesDropped"])
                    encode_ms.add_metric([phone, codec], entry["encodeMs"])
        yield from (viewers, encoders, frames, encoded, dropped, sent, encode_ms)
        rtcp = CounterMetricFamily(
            "cloudphone_rtcp_in",
            "Viewers' datagrams on the arrival path: RTCP read, REMB paced out before decryption,"
            " RTCP unreadable, or no STUN/DTLS/RTP at all (unsorted, dropped)",
            labels=["outcome"],
        )
        counters = rtcp_arrival.COUNTERS
        rtcp.add_metric(["read"], counters.read)
        rtcp.add_metric(["remb_paced"], counters.remb_paced)
        rtcp.add_metric(["unreadable"], counters.unreadable)
        rtcp.add_metric(["unsorted"], counters.unsorted)
        yield rtcp
        lag = self._loop_lag.summary()
        if lag.get("samples"):
            family = GaugeMetricFamily(
                "cloudphone_loop_lag_milliseconds", "Event-loop lag", labels=["quantile"]
            )
            family.add_metric(["0.5"], lag["p50_ms"])
            family.add_metric(["0.99"], lag["p99_ms"])
            family.add_metric(["1"], lag["max_ms"])
            yield family


def metrics_handler(
    node: EdgeNode, loop_lag: LoopLagMonitor
) -> Callable[[web.Request], Awaitable[web.Response]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EdgeCollector(node, loop_lag))

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    return handler
