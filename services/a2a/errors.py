"""The error answer of an A2A call: a JSON-RPC code, a message that says what to do,
and data a program can act on."""

from __future__ import annotations

from typing import Any

from contracts.a2a import TASK_NOT_FOUND


class RpcFailure(Exception):
    """An error answer: JSON-RPC code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data

    @classmethod
    def not_found(cls, task_id: str) -> RpcFailure:
        return cls(TASK_NOT_FOUND, f"task {task_id!r} not found", {"taskId": task_id})
