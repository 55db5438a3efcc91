"""The one error type the control plane raises for a refused request.

It carries an HTTP status and a stable machine-readable code; the API turns it into
`{"error": {"code", "message"}}`. Raised before any state changes, or inside a transaction that
it then rolls back, so a refusal never leaves a trace.
"""

from __future__ import annotations


class ControlError(Exception):
    """A request the control plane refuses, with the status and code the client sees."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(code: str, message: str) -> ControlError:
    return ControlError(400, code, message)


def not_found(what: str, ident: object) -> ControlError:
    return ControlError(404, f"{what}_not_found", f"no {what} {ident!r}")


def conflict(code: str, message: str) -> ControlError:
    return ControlError(409, code, message)
