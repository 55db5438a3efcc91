"""Calls and SMS through the user's real handset.

A guest app asks to dial or text (`GuestEventName.TELEPHONY`). The edge checks the number and
the phone's policy, then forwards the request on the `control` channel to the owner's page(s)
only; the page asks its user and opens `tel:` / `sms:` on the handset. The first answer, or a
timeout, goes back to the guest. Viewers never see these requests, and an answer from anyone
but an owner session of that phone is refused.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

from cloudphone.vm.guest import TelephonyRequest

OUTCOMES = ("confirmed", "refused")  # what a page may answer
# What the guest can be told: the page's answer, or why the edge decided alone.
RESULTS = ("confirmed", "refused", "timed-out", "forbidden", "invalid", "unavailable")
MAX_BODY = 1000
_SEPARATORS = re.compile(r"[\s().-]")
_E164 = re.compile(r"\+?[1-9][0-9]{2,14}")


class TelephonyError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalise_number(number: object) -> str:
    """E.164-ish: an optional `+`, 3..15 digits not starting with 0; spaces, dots, dashes and
    brackets are allowed as separators and removed. Anything else is refused."""
    if not isinstance(number, str) or len(number) > 32:
        raise TelephonyError("invalid-number", "a phone number is a string of at most 32 chars")
    compact = _SEPARATORS.sub("", number)
    if not _E164.fullmatch(compact):
        raise TelephonyError("invalid-number", f"{number!r} is not a valid phone number")
    return compact


def validate_request(request: TelephonyRequest) -> TelephonyRequest:
    if request.kind not in ("dial", "sms"):
        raise TelephonyError("bad-request", f"unknown telephony kind {request.kind!r}")
    if len(request.body) > MAX_BODY:
        raise TelephonyError("too-large", f"an SMS body is at most {MAX_BODY} characters")
    return TelephonyRequest(request.request_id, request.kind, normalise_number(request.number),
                            request.body if request.kind == "sms" else "")  # fmt: skip


@dataclass
class _Pending:
    request: TelephonyRequest
    future: asyncio.Future[str]


class TelephonyBridge:
    """Pending requests of one phone. `ask` forwards and waits; `answer` settles one."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}

    @property
    def pending(self) -> list[TelephonyRequest]:
        return [p.request for p in self._pending.values()]

    async def ask(
        self,
        request: TelephonyRequest,
        forward: Callable[[TelephonyRequest], int],
        timeout_s: float,
    ) -> str:
        """Forward `request` to the owners (`forward` returns how many got it) and wait."""
        if request.request_id in self._pending:
            return "invalid"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = _Pending(request, future)
        try:
            if forward(request) == 0:
                return "unavailable"  # no owner page is open to ask
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return "timed-out"
        finally:
            self._pending.pop(request.request_id, None)

    def answer(self, request_id: object, outcome: object) -> TelephonyRequest:
        if outcome not in OUTCOMES:
            raise TelephonyError("bad-message", "outcome must be confirmed or refused")
        pending = self._pending.get(request_id) if isinstance(request_id, str) else None
        if pending is None or pending.future.done():
            raise TelephonyError("unknown-request", "no such telephony request is waiting")
        pending.future.set_result(str(outcome))
        return pending.request
