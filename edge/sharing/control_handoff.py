"""One controller at a time: who holds a phone's input, and the rules for passing it on.

Pure state, no I/O, so every rule is a unit test. Members are sessions with a role. The
controller grants, refuses or takes back; an owner can always take control; a view-only guest
can never hold it. When the controller leaves, control falls back to an owner still present.
Input from anyone but the holder is dropped at the edge (`holds`).
"""

from __future__ import annotations

from dataclasses import dataclass


class HandoffError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Member:
    session: str
    name: str
    role: str  # "owner" | "controller" | "viewer"
    can_control: bool

    @property
    def owner(self) -> bool:
        return self.role == "owner"


class ControlFloor:
    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.holder: str | None = None
        self.requests: list[str] = []  # sessions asking for control, oldest first

    def holds(self, session: str) -> bool:
        return self.holder == session

    def join(self, member: Member) -> None:
        """Add a member. A new owner session takes control from an older owner session (the
        user opened another tab) but not from a guest the owner granted it to; a controller
        session gets it only when nobody holds it."""
        self.members[member.session] = member
        holder = self.members.get(self.holder) if self.holder else None
        if member.owner and (holder is None or holder.owner):
            self.holder = member.session
        elif holder is None and member.can_control and member.role != "viewer":
            self.holder = member.session

    def leave(self, session: str) -> None:
        self.members.pop(session, None)
        if session in self.requests:
            self.requests.remove(session)
        if self.holder == session:
            self.holder = self._first_owner()

    def request(self, session: str) -> None:
        member = self._member(session)
        if not member.can_control:
            raise HandoffError("forbidden", "this invite is view-only: control cannot be requested")
        if self.holder == session:
            raise HandoffError("bad-state", "you already have control")
        if self.holder is None:
            self.holder = session  # nobody holds it: no one to ask
            return
        if session not in self.requests:
            self.requests.append(session)

    def grant(self, by: str, to: str) -> None:
        self._check_granter(by)
        target = self._member(to)
        if not target.can_control:
            raise HandoffError("forbidden", f"{target.name} joined view-only")
        self.holder = to
        if to in self.requests:
            self.requests.remove(to)

    def refuse(self, by: str, to: str) -> None:
        self._check_granter(by)
        if to not in self.requests:
            raise HandoffError("bad-state", "that session has not asked for control")
        self.requests.remove(to)

    def revoke(self, by: str) -> None:
        """Take control back: the holder gives it up, or an owner takes it from the holder."""
        member = self._member(by)
        if self.holder != by and not member.owner:
            raise HandoffError("forbidden", "only the controller or an owner can take control back")
        self.holder = by if member.owner else self._first_owner()

    def take(self, by: str) -> None:
        """An owner takes control, whoever holds it."""
        if not self._member(by).owner:
            raise HandoffError("forbidden", "only an owner can take control")
        self.holder = by
        if by in self.requests:
            self.requests.remove(by)

    def _check_granter(self, by: str) -> None:
        member = self._member(by)
        if self.holder != by and not member.owner:
            raise HandoffError("forbidden", "only the controller or an owner can grant or refuse")

    def _member(self, session: str) -> Member:
        member = self.members.get(session)
        if member is None:
            raise HandoffError("unknown-session", f"no session {session!r} on this phone")
        return member

    def _first_owner(self) -> str | None:
        return next((s for s, m in self.members.items() if m.owner), None)
