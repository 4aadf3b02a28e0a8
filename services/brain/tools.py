"""The brain's tools: the fleet.api operations under the brain's tool names.

Names come from `contracts.api.tools.BRAIN_TOOLS`; fields, limits and
descriptions from the operations in `contracts.api`, so a tool's input schema
is the request type the owning service decodes, and nothing here can drift
from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.api.ops import Op, op
from contracts.api.tools import BRAIN_TOOLS, ToolArgsError, tool_request, tool_spec

ACTOR = "brain"
"""Who the brain is on the wire: the requester of its commands and its audit actor."""


@dataclass(frozen=True)
class Tool:
    """One tool the model may call, and the fleet.api operation that answers it."""

    name: str
    operation: Op

    @property
    def op(self) -> str:
        return self.operation.name

    def spec(self) -> dict[str, Any]:
        """The tool as the Messages API takes it."""
        return tool_spec(self.name, BRAIN_TOOLS)


TOOLS: tuple[Tool, ...] = tuple(Tool(name, op(name_of)) for name, name_of in BRAIN_TOOLS.items())
BY_NAME: dict[str, Tool] = {t.name: t for t in TOOLS}


class InvalidArgs(ValueError):
    """Tool arguments that fail validation; the message says which and why."""


def validate(name: str, args: Any) -> tuple[Tool, Any]:
    """The tool and its typed fleet.api request (requester: the brain), or InvalidArgs."""
    tool = BY_NAME.get(name)
    if tool is None:
        raise InvalidArgs(f"no tool named {name!r}; tools: {', '.join(BY_NAME)}")
    try:
        return tool, tool_request(tool.operation, args, ACTOR)
    except ToolArgsError as exc:
        raise InvalidArgs(f"{name}: {exc}") from None
