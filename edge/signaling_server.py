"""The `/ws` endpoint: runs the signaling protocol for one browser per WebSocket.

Sequence: `hello` (within 10 s) -> authorise -> `welcome` + `offer` -> `answer` (within 30 s)
and trickled `candidate`s -> media flows -> `bye` from either side. Every protocol error gets an
`error` frame naming it; fatal ones close the socket with a specific close code. When the edge
ends the session (phone released, connection failed) the browser gets `bye {reason}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web
from cloudphone.edge.auth import AccessDenied, Authorizer
from cloudphone.edge.node import EdgeNode
from cloudphone.edge.session import PeerSession, SessionOptions
from cloudphone.signaling.ice_servers import IceServer
from cloudphone.signaling.protocol import (
    MAX_MESSAGE_BYTES,
    Answer,
    Bye,
    Candidate,
    CloseCode,
    ErrorCode,
    Hello,
    ProtocolError,
    error_message,
    message,
    parse_client_message,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
ANSWER_TIMEOUT_S = 30.0


class SignalingServer:
    def __init__(
        self,
        node: EdgeNode,
        authorizer: Authorizer,
        ice_servers_for: Callable[[str], list[IceServer]],
        announced_addresses: dict[str, str] | None = None,
        playout_delay: tuple[int, int] | None = (0, 100),
        ice_relay_only: bool = False,
    ) -> None:
        self.playout_delay = playout_delay
        self.ice_relay_only = ice_relay_only
        self.node = node
        self.authorizer = authorizer
        self.ice_servers_for = ice_servers_for
        self.announced = tuple((announced_addresses or {}).items())
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def connections(self) -> int:
        """Open signaling WebSockets."""
        return len(self._sockets)

    async def close_all(self) -> None:
        """Say goodbye (1001 going away) to every client: the edge is stopping. Without it a
        stop waits for each open socket to time out, and pages only notice much later."""
        sockets = list(self._sockets)
        if sockets:
            log.info("closing %d signaling connections: the edge is stopping", len(sockets))
        await asyncio.gather(
            *(ws.close(code=CloseCode.GOING_AWAY, message=b"edge stopping") for ws in sockets),
            return_exceptions=True,
        )

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # aiohttp closes with 1009 above max_msg_size; between 64 KiB and that we answer first.
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4 * MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        self._sockets.add(ws)
        peer = request.remote or "?"
        try:
            await _Connection(self, ws, peer).run()
        finally:
            self._sockets.discard(ws)
        return ws


class _Connection:
    def __init__(self, server: SignalingServer, ws: web.WebSocketResponse, peer: str) -> None:
        self.server = server
        self.ws = ws
        self.peer = peer
        self.session: PeerSession | None = None
        self.answered = False
        self._timeout_task: asyncio.Future[None] | None = None

    async def run(self) -> None:
        try:
            hello = await asyncio.wait_for(self._first_message(), HELLO_TIMEOUT_S)
            if hello is None:
                return
            if not await self._open(hello):
                return
            await self._serve()
        except TimeoutError:
            await self._fail(ErrorCode.TIMEOUT, "no hello within 10 s", CloseCode.TIMEOUT)
        except Exception:
            log.exception("signaling %s: internal error", self.peer)
            await self._fail(ErrorCode.INTERNAL, "internal error", CloseCode.INTERNAL)
        finally:
            if self.session is not None:
                await self.session.close("signaling closed")
            if not self.ws.closed:
                await self.ws.close()

    async def _first_message(self) -> Hello | None:
        while True:
            msg = await self.ws.receive()
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await self._send_error(ErrorCode.BAD_MESSAGE, "binary frames are not used")
                    continue
                if msg.type == WSMsgType.ERROR:
                    log.info("signaling %s: websocket error %s", self.peer, self.ws.exception())
                return None
            try:
                parsed = parse_client_message(msg.data)
            except ProtocolError as exc:
                if not await self._protocol_error(exc):
                    return None
                continue
            if isinstance(parsed, Hello):
                return parsed
            if isinstance(parsed, Bye):
                return None
            await self._send_error(ErrorCode.BAD_STATE, "say hello first")

    async def _open(self, hello: Hello) -> bool:
        server = self.server
        try:
            principal = await server.authorizer.authorize(hello.token, hello.instance, hello.role)
            if hello.instance in server.node.pipelines:
                server.node.admit(hello.instance, self.peer)
        except AccessDenied as exc:
            code = ErrorCode.FORBIDDEN if exc.code == "forbidden" else ErrorCode.UNAUTHORIZED
            close = CloseCode.FORBIDDEN if exc.code == "forbidden" else CloseCode.UNAUTHORIZED
            log.info("signaling %s: %s for %s: %s", self.peer, code, hello.instance, exc.message)
            await self._fail(code, exc.message, close)
            return False
        if hello.instance not in server.node.pipelines:
            log.info("signaling %s: unknown instance %r", self.peer, hello.instance)
            await self._fail(
                ErrorCode.UNKNOWN_INSTANCE, f"no phone {hello.instance!r} here", CloseCode.NOT_FOUND
            )
            return False
        ice_servers = server.ice_servers_for(principal.name)
        options = SessionOptions(
            hello.codec,
            tuple(ice_servers),
            server.announced,
            ice_relay_only=server.ice_relay_only,
            playout_delay=server.playout_delay,
        )
        session = await server.node.open_session(hello.instance, principal, options)
        self.session = session
        guest = session.guest
        offer = await session.offer()
        await self.ws.send_str(
            message(
                "welcome",
                session=session.session_id,
                role=principal.role,
                name=principal.name,
                canControl=principal.can_control,
                iceServers=[s.as_dict() for s in ice_servers],
                screen={
                    "width": session.pipeline.size[0],
                    "height": session.pipeline.size[1],
                    "rotation": guest.screen.rotation,
                },
                capabilities=guest.capabilities.as_dict(),
                guestState=str(guest.state),
            )
        )
        await self.ws.send_str(message("offer", sdp=offer))
        return True

    async def _serve(self) -> None:
        assert self.session is not None
        receiver = asyncio.create_task(self._receive_loop())
        ended = asyncio.create_task(self.session.closed.wait())
        answer_deadline = asyncio.get_running_loop().call_later(
            ANSWER_TIMEOUT_S, self._answer_timeout
        )
        try:
            done, _ = await asyncio.wait({receiver, ended}, return_when=asyncio.FIRST_COMPLETED)
            if ended in done and not self.ws.closed:
                reason = self.session.close_reason
                await self.ws.send_str(message("bye", reason=reason))
                code = (
                    CloseCode.RELEASED
                    if "releas" in reason or "delet" in reason
                    else CloseCode.NORMAL
                )
                await self.ws.close(code=code, message=reason[:120].encode())
        finally:
            answer_deadline.cancel()
            for task in (receiver, ended):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _answer_timeout(self) -> None:
        if not self.answered and not self.ws.closed:
            self._timeout_task = asyncio.ensure_future(
                self._fail(ErrorCode.TIMEOUT, "no answer within 30 s", CloseCode.TIMEOUT)
            )

    async def _receive_loop(self) -> None:
        session = self.session
        assert session is not None
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                await self._send_error(ErrorCode.BAD_MESSAGE, "binary frames are not used")
                continue
            if msg.type != WSMsgType.TEXT:
                return
            try:
                parsed = parse_client_message(msg.data)
            except ProtocolError as exc:
                if not await self._protocol_error(exc):
                    return
                continue
            if isinstance(parsed, Bye):
                log.info("signaling %s: bye (%s)", self.peer, parsed.reason or "no reason")
                return
            if isinstance(parsed, Hello):
                await self._send_error(ErrorCode.BAD_STATE, "already said hello")
            elif isinstance(parsed, Answer):
                if self.answered:
                    await self._send_error(ErrorCode.BAD_STATE, "answer already received")
                    continue
                try:
                    await session.accept_answer(parsed.sdp)
                except ValueError as exc:
                    await self._send_error(ErrorCode.BAD_MESSAGE, f"answer refused: {exc}")
                    continue
                self.answered = True
            elif isinstance(parsed, Candidate):
                try:
                    await session.add_remote_candidate(
                        parsed.candidate, parsed.sdp_mid, parsed.sdp_mline_index
                    )
                except (ValueError, IndexError, KeyError) as exc:
                    await self._send_error(ErrorCode.BAD_MESSAGE, f"candidate refused: {exc}")

    async def _protocol_error(self, exc: ProtocolError) -> bool:
        """Report a bad frame; returns False when the connection must end."""
        log.info("signaling %s: %s: %s", self.peer, exc.code, exc.message)
        if exc.fatal:
            close = (
                CloseCode.TOO_LARGE if exc.code == ErrorCode.TOO_LARGE else CloseCode.PROTOCOL_ERROR
            )
            await self._fail(exc.code, exc.message, close)
            return False
        await self._send_error(exc.code, exc.message)
        return True

    async def _send_error(self, code: ErrorCode, text: str) -> None:
        if not self.ws.closed:
            await self.ws.send_str(error_message(code, text))

    async def _fail(self, code: ErrorCode, text: str, close: CloseCode) -> None:
        if not self.ws.closed:
            await self.ws.send_str(error_message(code, text, fatal=True))
            await self.ws.close(code=close, message=text[:120].encode())
