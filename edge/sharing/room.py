"""The room of one phone: everyone watching it, who controls it, and what they may do there.

The room is where sharing, security policy and telephony meet the sessions: it keeps the
control floor, answers the namespaced `control` channel messages (`control/*`, `viewers/*`,
`invites/*`, `clipboard/*`, `telephony/answer`), forwards guest clipboard and telephony events to
the sessions allowed to see them, enforces idle and session-length limits, and writes the audit
log. Sessions never decide any of this themselves; a forged message gets a clear error and
changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cloudphone.edge.audit import AuditLog
from cloudphone.edge.policy import Policy
from cloudphone.edge.sharing.control_handoff import ControlFloor, HandoffError, Member
from cloudphone.edge.sharing.invites import InviteBook, InviteError
from cloudphone.edge.telephony import TelephonyBridge, TelephonyError, validate_request
from cloudphone.vm.guest import Guest, GuestEventName, TelephonyRequest

if TYPE_CHECKING:
    from cloudphone.edge.session import PeerSession

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 0.25


class RoomError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Room:
    def __init__(
        self,
        instance: str,
        guest: Guest,
        policy: Callable[[], Policy],
        invites: InviteBook,
        audit: AuditLog,
    ) -> None:
        self.instance = instance
        self.guest = guest
        self.policy = policy
        self.invites = invites
        self.audit = audit
        self.floor = ControlFloor()
        self.telephony = TelephonyBridge()
        self.sessions: dict[str, PeerSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        guest.events.on(GuestEventName.CLIPBOARD, self._on_guest_clipboard)
        guest.events.on(GuestEventName.TELEPHONY, self._on_guest_telephony)

    # -- membership --------------------------------------------------------------------------

    def mark_for(self, name: str) -> str | None:
        """The watermark label of a viewer called `name` under the current policy."""
        policy = self.policy()
        if policy.watermark == "viewer":
            return name
        if policy.watermark == "shared":
            return policy.watermark_text or self.instance
        return None

    def join(self, session: PeerSession) -> None:
        ident = session.identity
        if ident.role == "owner" and self.policy().preempt:
            for old in [s for s in self.sessions.values() if s.role == "owner"]:
                self._record("session/preempted", old, by=session.session_id)
                self._spawn(old.close("preempted by a newer session of the owner"))
                self.floor.leave(old.session_id)
                del self.sessions[old.session_id]
        self.sessions[session.session_id] = session
        self.floor.join(Member(session.session_id, ident.name, ident.role, ident.can_control))
        self._record("session/join", session, kind=ident.kind, invite=ident.invite)
        if self.floor.holds(session.session_id):
            self._record("control/grant", session, to=session.session_id, reason="joined")
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        self.broadcast_state()

    def leave(self, session: PeerSession, reason: str) -> None:
        if self.sessions.pop(session.session_id, None) is None:
            return
        held = self.floor.holds(session.session_id)
        self.floor.leave(session.session_id)
        seconds = round(time.monotonic() - session.created_at, 1)
        self._record("session/leave", session, reason=reason, seconds=seconds)
        if held and self.floor.holder is not None:
            self._record("control/grant", self.sessions[self.floor.holder],
                         to=self.floor.holder, reason="controller left")  # fmt: skip
        self.broadcast_state()

    def may_input(self, session: PeerSession) -> bool:
        return self.floor.holds(session.session_id)

    # -- control channel ---------------------------------------------------------------------

    HANDLED = frozenset(
        {
            "control/request", "control/grant", "control/refuse", "control/revoke",
            "control/take", "viewers/kick", "invites/create", "invites/revoke", "invites/list",
            "telephony/answer", "clipboard/set", "control/clipboard",
        }
    )  # fmt: skip

    def handle(self, session: PeerSession, kind: str, data: dict[str, Any]) -> bool:
        """Act on one control message; False when it is not the room's to answer."""
        if kind not in self.HANDLED:
            return False
        try:
            self._dispatch(session, kind, data)
        except (HandoffError, InviteError, TelephonyError, RoomError) as exc:
            self._refuse(session, kind, exc)
        return True

    def _refuse(
        self,
        session: PeerSession,
        kind: str,
        exc: HandoffError | InviteError | TelephonyError | RoomError,
    ) -> None:
        log.info("%s: %s from %s refused: %s", self.instance, kind, session.session_id,
                 exc.message)  # fmt: skip
        session.send_control("error", code=exc.code, message=exc.message, request=kind)

    def _answer_later(self, session: PeerSession, kind: str, work: Awaitable[None]) -> None:
        """Run a request that waits on the invite store; its refusal is answered like any."""

        async def run() -> None:
            try:
                await work
            except (InviteError, RoomError) as exc:
                self._refuse(session, kind, exc)
            except Exception:  # the store failed: say so, keep the room going
                log.exception("%s: %s from %s failed", self.instance, kind, session.session_id)
                message = "the edge could not do that now; see its log"
                session.send_control("error", code="internal", message=message, request=kind)

        self._spawn(run())

    def _dispatch(self, session: PeerSession, kind: str, data: dict[str, Any]) -> None:
        sid = session.session_id
        floor = self.floor
        if kind == "control/request":
            before = floor.holder
            floor.request(sid)
            self._record("control/request", session)
            if floor.holder != before:
                self._record("control/grant", session, to=sid, reason="nobody had control")
        elif kind == "control/grant":
            target = self._target(data)
            floor.grant(sid, target.session_id)
            self._record("control/grant", session, to=target.session_id, toName=target.name)
        elif kind == "control/refuse":
            target = self._target(data)
            floor.refuse(sid, target.session_id)
            target.send_control("control/refused", by=session.name)
            self._record("control/refuse", session, to=target.session_id, toName=target.name)
        elif kind == "control/revoke":
            previous = floor.holder
            floor.revoke(sid)
            self._record("control/revoke", session, taken_from=previous)
        elif kind == "control/take":
            previous = floor.holder
            floor.take(sid)
            self._record("control/take", session, taken_from=previous)
        elif kind == "viewers/kick":
            self._owner_only(session, "kick viewers")
            target = self._target(data)
            if target is session:
                raise RoomError("bad-state", "you cannot kick yourself")
            self._record("session/kick", session, to=target.session_id, toName=target.name)
            self._spawn(target.close(f"kicked by {session.name}"))
            return
        elif kind == "invites/create":
            self._owner_only(session, "create invites")
            self._answer_later(session, kind, self._create_invite(session, data))
            return
        elif kind == "invites/revoke":
            self._owner_only(session, "revoke invites")
            self._answer_later(session, kind, self._revoke_invite(session, data.get("id")))
            return
        elif kind == "invites/list":
            self._owner_only(session, "list invites")
            self._answer_later(session, kind, self._send_invites(session))
            return
        elif kind == "telephony/answer":
            self._owner_only(session, "answer telephony requests")
            request = self.telephony.answer(data.get("id"), data.get("outcome"))
            self._record("telephony/answer", session, request=request.request_id,
                         outcome=data.get("outcome"), number=request.number)  # fmt: skip
            return
        elif kind in ("clipboard/set", "control/clipboard"):
            self._clipboard_to_phone(session, kind, data.get("text"))
            return
        self.broadcast_state()

    def _target(self, data: dict[str, Any]) -> PeerSession:
        wanted = data.get("session")
        target = self.sessions.get(wanted) if isinstance(wanted, str) else None
        if target is None:
            raise RoomError("unknown-session", "name a session of this phone in `session`")
        return target

    def _owner_only(self, session: PeerSession, what: str) -> None:
        if session.role != "owner":
            raise RoomError("forbidden", f"only the owner can {what}")

    async def _create_invite(self, session: PeerSession, data: dict[str, Any]) -> None:
        invite, token = await self.invites.create(
            self.instance,
            kind=data.get("kind"),
            label=data.get("label"),
            ttl_s=data.get("ttlS", 3600),
            max_uses=data.get("maxUses", 1),
            created_by=session.name,
        )
        self._record("invite/create", session, invite=invite.invite_id, label=invite.label,
                     inviteKind=invite.kind, maxUses=invite.max_uses)  # fmt: skip
        session.send_control("invites/created", invite=invite.as_dict(), token=token,
                             path=f"/phone/{self.instance}?token={token}&role=viewer")  # fmt: skip

    async def _revoke_invite(self, session: PeerSession, invite_id: object) -> None:
        invite = await self.invites.get(invite_id) if isinstance(invite_id, str) else None
        if invite is None or invite.instance != self.instance:
            raise InviteError("invite-unknown", "no such invite for this phone")
        await self.invites.revoke(invite.invite_id)
        self._record("invite/revoke", session, invite=invite.invite_id, label=invite.label)
        await self._send_invites(session)

    async def _send_invites(self, session: PeerSession) -> None:
        invites = await self.invites.of_instance(self.instance)
        session.send_control("invites/list", invites=[i.as_dict() for i in invites])

    # -- clipboard ---------------------------------------------------------------------------

    def _clipboard_to_phone(self, session: PeerSession, kind: str, text: object) -> None:
        policy = self.policy()
        ack = "control/clipboard-ack" if kind == "control/clipboard" else "clipboard/ack"
        if not isinstance(text, str):
            raise RoomError("bad-message", "clipboard text must be a string")
        if not policy.clipboard_to_phone():
            self._record("clipboard/blocked", session, direction="browser-to-phone")
            session.send_control(ack, ok=False)
            raise RoomError("clipboard-forbidden",
                            f"the policy of this phone does not allow browser-to-phone "
                            f"clipboard (clipboard = {policy.clipboard})")  # fmt: skip
        size = len(text.encode())
        if size > policy.clipboard_max_bytes:
            session.send_control(ack, ok=False)
            raise RoomError("too-large",
                            f"clipboard text is {size} bytes; at most "
                            f"{policy.clipboard_max_bytes} are allowed")  # fmt: skip
        if not self.floor.holds(session.session_id):
            session.send_control(ack, ok=False)
            raise RoomError("forbidden", "only the session in control can paste into the phone")
        self._record("clipboard/to-phone", session, bytes=size)
        self._spawn(self._set_clipboard(session, ack, text))

    async def _set_clipboard(self, session: PeerSession, ack: str, text: str) -> None:
        setter = getattr(self.guest, "set_clipboard", None)
        ok = bool(await setter(text)) if callable(setter) else False
        session.send_control(ack, ok=ok)

    def _on_guest_clipboard(self, text: str) -> None:
        policy = self.policy()
        if not policy.clipboard_to_browser():
            self.audit.record("clipboard/blocked", phone=self.instance, actor="phone",
                              direction="phone-to-browser")  # fmt: skip
            return
        if len(text.encode()) > policy.clipboard_max_bytes:
            self.audit.record("clipboard/blocked", phone=self.instance, actor="phone",
                              direction="phone-to-browser", reason="too-large")  # fmt: skip
            return
        receivers = [s for s in self.sessions.values()
                     if s.role == "owner" or self.floor.holds(s.session_id)]  # fmt: skip
        for session in receivers:
            session.send_control("guest/clipboard", text=text)
        self.audit.record("clipboard/to-browser", phone=self.instance, actor="phone",
                          bytes=len(text.encode()), to=[s.name for s in receivers])  # fmt: skip

    # -- telephony ---------------------------------------------------------------------------

    def _on_guest_telephony(self, request: TelephonyRequest) -> None:
        self._spawn(self._telephony(request))

    async def _telephony(self, request: TelephonyRequest) -> None:
        policy = self.policy()
        try:
            request = validate_request(request)
        except TelephonyError as exc:
            result = "invalid"
            self.audit.record("telephony/invalid", phone=self.instance, actor="phone",
                              request=request.request_id, error=exc.message)  # fmt: skip
        else:
            if not policy.telephony:
                result = "forbidden"
            else:
                result = await self.telephony.ask(request, self._forward_telephony,
                                                  policy.telephony_timeout_s)  # fmt: skip
            self.audit.record("telephony/" + request.kind, phone=self.instance, actor="phone",
                              request=request.request_id, number=request.number,
                              result=result)  # fmt: skip
        for owner in self._owners():
            owner.send_control("telephony/result", id=request.request_id, result=result)
        answer = getattr(self.guest, "answer_telephony", None)
        if callable(answer):
            await answer(request.request_id, result)

    def _forward_telephony(self, request: TelephonyRequest) -> int:
        owners = self._owners()
        for owner in owners:
            owner.send_control("telephony/request", id=request.request_id, kind=request.kind,
                               number=request.number, body=request.body)  # fmt: skip
        return len(owners)

    def _owners(self) -> list[PeerSession]:
        return [s for s in self.sessions.values() if s.role == "owner" and s.control_open]

    # -- state and limits --------------------------------------------------------------------

    def state_for(self, session: PeerSession) -> dict[str, Any]:
        floor = self.floor
        holder = self.sessions.get(floor.holder) if floor.holder else None
        state: dict[str, Any] = {
            "you": session.session_id,
            "name": session.name,
            "role": session.role,
            "canControl": session.identity.can_control,
            "inControl": floor.holds(session.session_id),
            "controller": floor.holder,
            "controllerName": holder.name if holder else None,
            "requests": [
                {"session": s, "name": self.sessions[s].name}
                for s in floor.requests
                if s in self.sessions
            ],
            "viewerCount": len(self.sessions),
        }
        if session.role == "owner":
            state["viewers"] = [
                {"session": s.session_id, "name": s.name, "role": s.role,
                 "kind": s.identity.kind, "inControl": floor.holds(s.session_id)}
                for s in self.sessions.values()
            ]  # fmt: skip
        return state

    def send_state(self, session: PeerSession) -> None:
        session.send_control("control/state", **self.state_for(session))

    def broadcast_state(self) -> None:
        for session in list(self.sessions.values()):
            self.send_state(session)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            policy = self.policy()
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.closing:
                    continue
                if policy.idle_timeout_s and now - session.last_activity > policy.idle_timeout_s:
                    self._record("session/idle-timeout", session)
                    self._spawn(session.close("idle timeout"))
                elif policy.max_session_s and now - session.created_at > policy.max_session_s:
                    self._record("session/max-length", session)
                    self._spawn(session.close("maximum session length reached"))

    def _record(self, action: str, session: PeerSession, **details: Any) -> None:
        self.audit.record(action, phone=self.instance, actor=session.name,
                          session=session.session_id, role=session.role, **details)  # fmt: skip

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self.guest.events.remove_listener(GuestEventName.CLIPBOARD, self._on_guest_clipboard)
        self.guest.events.remove_listener(GuestEventName.TELEPHONY, self._on_guest_telephony)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
