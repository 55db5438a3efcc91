"""Shared fixtures: a real edge on 127.0.0.1 and real aiortc viewers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cloudphone.edge.app import NODE, POOL, create_app
from cloudphone.edge.client import PhoneClient
from cloudphone.edge.config import EdgeConfig, load_config
from cloudphone.edge.node import EdgeNode
from cloudphone.edge.session import PeerSession
from cloudphone.vm.pool import InstancePool


class Edge:
    """A running edge and helpers to connect viewers to it."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.clients: list[PhoneClient] = []

    @property
    def node(self) -> EdgeNode:
        return self.server.app[NODE]

    @property
    def pool(self) -> InstancePool:
        return self.server.app[POOL]

    @property
    def ws_url(self) -> str:
        return str(self.server.make_url("/ws"))

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def only_session(self) -> PeerSession:
        """The edge's one open viewer session (tests that connect a single viewer)."""
        (session,) = self.node.sessions.values()
        return session

    async def viewer(self, instance: str = "phone-1", **kwargs: Any) -> PhoneClient:
        client = await PhoneClient.connect(self.http, self.ws_url, instance, **kwargs)
        self.clients.append(client)
        return client

    async def ws(self) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect(self.ws_url)


EdgeFactory = Callable[..., Awaitable[Edge]]


@pytest.fixture
async def make_edge() -> AsyncIterator[EdgeFactory]:
    edges: list[Edge] = []

    async def factory(**overrides: Any) -> Edge:
        options: dict[str, Any] = {"ice_host_addresses": ["127.0.0.1"], "stamp": True, "phones": 1}
        options.update(overrides)
        config: EdgeConfig = load_config(environ={}, overrides=options)
        server = TestServer(create_app(config), host="127.0.0.1", port=0)
        await server.start_server()
        http = aiohttp.ClientSession()
        edge = Edge(server, http)
        edges.append(edge)
        return edge

    yield factory
    for edge in edges:
        for client in edge.clients:
            await client.close()
        await edge.http.close()
        await edge.server.close()
    gc.collect()


@pytest.fixture
async def edge(make_edge: EdgeFactory) -> Edge:
    return await make_edge()


async def eventually(
    check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until `check()` holds; fail with a clear message otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(interval)


async def drag_until(client: PhoneClient, done: Callable[[], bool], moves: int = 200) -> None:
    """Move pointer 0 (already down) in a zig-zag at 40 Hz until `done()` holds or `moves` are
    sent: the simulated phone renders on change, so this is how a test gets frames."""
    for i in range(moves):
        if done():
            return
        client.touch("move", 0.1 + (i % 80) / 100, 0.5 + (i % 7) / 100)
        await asyncio.sleep(1 / 40)
