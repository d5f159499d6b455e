"""Domain errors raised by services and selectors, mapped to HTTP by each interface."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """Raise a domain error with a stable machine code, a human message and structured detail."""

    status_code = 400

    def __init__(
        self,
        code: str,
        message: str,
        detail: dict[str, Any] | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}
        if status is not None:
            self.status_code = status

    def text(self) -> str:
        """The message with each field's problems after it, for a page to show ("Invalid x. name: Required.")."""
        problems = "; ".join(
            f"{field}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
            for field, messages in self.detail.items()
        )
        return f"{self.message} {problems}".strip()


class NotFoundError(ApplicationError):
    """Raise when an object does not exist or the actor may not know that it does."""

    status_code = 404

    def __init__(self, message: str = "Not found.", detail: dict[str, Any] | None = None) -> None:
        super().__init__("not_found", message, detail)


class PermissionDeniedError(ApplicationError):
    """Raise when the actor sees the object but its role does not allow the action."""

    status_code = 403

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__("permission_denied", message, detail)
