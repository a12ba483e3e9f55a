"""A request's tools on their way to another API, and its tool calls on their way back.

Only the Responses API has namespaced tools (Codex's ``multi_agent_v1``) and free-form custom
tools (Codex's ``apply_patch``), and every API has hosted tools the others lack. Before a
request is encoded for another API, :func:`prepare`:

* flattens a namespaced tool to a function tool named ``namespace__name`` (names that would be
  too long or hold characters the APIs refuse are shortened with a hash, reversibly through
  the :class:`ToolMap`);
* carries a custom tool as a function tool with one string argument, ``{"input": "..."}``,
  whose description says what the input is (its grammar included);
* leaves hosted tools out, recording the omission, unless ``tool_choice`` requires one: then
  the request cannot be carried (:class:`Uncarriable`);
* rewrites the history's calls and results the same way, so that ids and names still pair.

On the way back, :meth:`ToolMap.restore` turns an upstream's call of a flat name into the
client's own tool (namespace, custom kind, its raw input), and :class:`StreamToolMapper` does it
to a stream's tool blocks as they pass (a custom tool's argument JSON is held until its block
ends, then given as the raw input).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

import orjson

from spillgate.protocols.translate.canonical import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Carried,
    Message,
    Part,
    Request,
    StreamEvent,
    Tool,
    ToolCall,
    ToolChoice,
    ToolKind,
    ToolResult,
    Uncarriable,
)

SEPARATOR = "__"
"""Between a namespace and its tool's name in a flat name."""
MAX_NAME = 64
"""The longest tool name the OpenAI and Anthropic APIs take."""
_VALID_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CUSTOM_ARGUMENT = "input"
"""The one argument of a custom tool carried as a function tool."""


@dataclass(frozen=True, slots=True)
class ClientTool:
    """What a flat name stands for on the client's side."""

    name: str
    namespace: str | None
    kind: ToolKind


@dataclass(slots=True)
class ToolMap:
    """Flat names (what the upstream sees) -> the client's tools."""

    by_flat: dict[str, ClientTool] = field(default_factory=dict)

    def restore(self, call: ToolCall) -> ToolCall:
        """An upstream's call as a call of the client's own tool."""
        tool = self.by_flat.get(call.name)
        if tool is None:
            return call
        arguments = unwrap_custom(call.arguments) if tool.kind == "custom" else call.arguments
        return replace(call, name=tool.name, namespace=tool.namespace, kind=tool.kind, arguments=arguments)

    def client_tool(self, flat: str) -> ClientTool | None:
        return self.by_flat.get(flat)


def flat_name(name: str, namespace: str | None) -> str:
    """The name an upstream of another API sees for a (namespaced) tool."""
    joined = name if namespace is None else f"{namespace}{SEPARATOR}{name}"
    if _VALID_NAME.match(joined):
        return joined
    digest = hashlib.sha256(joined.encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[: MAX_NAME - 10]
    return f"t{digest}_{cleaned}"


def wrap_custom(raw: str) -> str:
    """A custom tool's raw input as the arguments of its function-tool stand-in."""
    return orjson.dumps({CUSTOM_ARGUMENT: raw}).decode()


def unwrap_custom(arguments: str) -> str:
    """The raw input back from a function-tool stand-in's arguments (as given when they are not
    the ``{"input": "..."}`` object)."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict):
        inner = value.get(CUSTOM_ARGUMENT)
        if isinstance(inner, str):
            return inner
    return arguments


def _custom_description(tool: Tool) -> str:
    text = tool.description or ""
    note = (
        f"This tool takes one string argument, '{CUSTOM_ARGUMENT}': the tool's whole free-form input "
        "as the text it expects (not JSON)."
    )
    fmt = tool.format
    if fmt:
        definition = fmt.get("definition")
        syntax = fmt.get("syntax")
        if isinstance(definition, str) and definition:
            kind = f"{syntax} " if isinstance(syntax, str) and syntax else ""
            note += f" The input follows this {kind}grammar:\n{definition}"
    return f"{text}\n\n{note}" if text else note


def _carried_tool(tool: Tool, flat: str) -> Tool:
    if tool.kind == "custom":
        return Tool(
            name=flat,
            description=_custom_description(tool),
            parameters={
                "type": "object",
                "properties": {CUSTOM_ARGUMENT: {"type": "string"}},
                "required": [CUSTOM_ARGUMENT],
                "additionalProperties": False,
            },
            cache=tool.cache,
        )
    description = tool.description
    if tool.namespace is not None and tool.namespace_description:
        part_of = f"(Part of {tool.namespace}: {tool.namespace_description})"
        description = f"{description}\n\n{part_of}" if description else part_of
    return replace(tool, name=flat, namespace=None, namespace_description=None, description=description)


def uses_tools(request: Request) -> bool:
    """Whether the history holds a tool call or a tool result."""
    return any(isinstance(p, ToolCall | ToolResult) for m in request.messages for p in m.parts)


def prepare(request: Request, carried: Carried) -> tuple[Request, ToolMap]:
    """``request`` with only function tools (see the module docstring) and the map back."""
    bare = not (request.tools or request.tool_choice or request.untranslatable or request.droppable)
    if bare and not uses_tools(request):
        return request, ToolMap()  # nothing to carry: the request as it is
    for what in request.untranslatable:
        raise Uncarriable(what)
    for what in request.droppable:
        carried.omit(what)
    tools_map = ToolMap()
    tools: list[Tool] = []
    hosted: set[str] = set()
    for tool in request.tools:
        if tool.kind == "hosted":
            hosted.add(tool.name)
            carried.omit(f"hosted tool {tool.name}")
            continue
        flat = flat_name(tool.name, tool.namespace)
        if tool.kind == "custom" or tool.namespace is not None or flat != tool.name:
            kind: ToolKind = "custom" if tool.kind == "custom" else "function"
            tools_map.by_flat[flat] = ClientTool(tool.name, tool.namespace, kind)
        tools.append(_carried_tool(tool, flat))
    choice = request.tool_choice
    if choice is not None and choice.mode == "tool":
        if choice.hosted or (choice.name in hosted):
            raise Uncarriable(f"tool_choice requires the hosted tool {choice.name!r}")
        named = next((t for t in request.tools if t.name == choice.name and t.kind != "hosted"), None)
        if named is not None:
            choice = ToolChoice("tool", flat_name(named.name, named.namespace))
    messages = tuple(_carried_message(m) for m in request.messages)
    return replace(request, tools=tuple(tools), tool_choice=choice, messages=messages), tools_map


def _carried_message(message: Message) -> Message:
    if not any(isinstance(p, ToolCall | ToolResult) for p in message.parts):
        return message
    return replace(message, parts=tuple(_carried_part(p) for p in message.parts))


def _carried_part(part: Part) -> Part:
    if isinstance(part, ToolCall):
        flat = flat_name(part.name, part.namespace)
        arguments = wrap_custom(part.arguments) if part.kind == "custom" else part.arguments
        return replace(part, name=flat, namespace=None, kind="function", arguments=arguments, item_id=None)
    if isinstance(part, ToolResult) and part.kind != "function":
        return replace(part, kind="function")
    return part


class StreamToolMapper:
    """Restores the client's tools in a stream's tool blocks (see the module docstring)."""

    __slots__ = ("_held", "_map")

    def __init__(self, tools: ToolMap) -> None:
        self._map = tools
        self._held: dict[int, list[str]] = {}
        """Custom tools' blocks: their argument JSON, until the block stops."""

    def map(self, event: StreamEvent) -> list[StreamEvent]:
        if not self._map.by_flat:
            return [event]
        if isinstance(event, BlockStart) and event.kind == "tool" and event.name is not None:
            tool = self._map.client_tool(event.name)
            if tool is None:
                return [event]
            if tool.kind == "custom":
                self._held[event.index] = []
            return [replace(event, name=tool.name, namespace=tool.namespace, tool_kind=tool.kind)]
        if isinstance(event, BlockDelta) and event.index in self._held:
            self._held[event.index].append(event.text)
            return []
        if isinstance(event, BlockStop) and event.index in self._held:
            raw = unwrap_custom("".join(self._held.pop(event.index)))
            return [BlockDelta(event.index, raw), event] if raw else [event]
        return [event]
