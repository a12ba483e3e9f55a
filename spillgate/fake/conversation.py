"""Scripted coding turns: the fake answers like an agent's model that runs shell commands.

A :class:`Conversation` on a model's behaviour makes its answers depend on where the agent's turn
is, read from the request's history, in each of the three APIs:

* ``k`` tool outputs so far and ``k < len(commands)``: the reasoning, then a call of the request's
  shell tool running ``commands[k]``;
* otherwise: the final assistant message ``answer`` (plus, with ``echo_output``, the last
  tool output, so the answer shows that the command really ran).

Where each API carries them:

=================  ================================  ==========================================
API                tool outputs                      shell tool offered as
=================  ================================  ==========================================
OpenAI Responses   ``input[]`` ``*_call_output``     ``tools[]`` ``{type: function, name,
                   items' ``output``                 parameters}``
Chat Completions   ``messages[]`` ``role: tool``     ``tools[].function`` ``{name, parameters}``
                   messages' ``content``
Anthropic          ``tool_result`` blocks of user    ``tools[]`` ``{name, input_schema}``
Messages           messages (their ``content``)
=================  ================================  ==========================================

The shell tool is looked up by name and its arguments are shaped by its JSON schema: Codex CLI's
``exec_command`` takes ``{"cmd": "..."}``, older builds' ``shell`` takes
``{"command": ["bash", "-lc", "..."]}``, ``shell_command`` and Claude Code's ``Bash`` take
``{"command": "..."}``. Everything here is pure; :mod:`spillgate.fake.content` writes the reply in
the request's API and the server applies faults on top as for any other answer.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from spillgate.fake.protocol import ANTHROPIC, CHAT, RESPONSES, ApiProtocol, JsonValue

SHELL_TOOLS: Final = ("exec_command", "shell_command", "shell", "Bash")
"""Function tool names taken as "run a shell command", in order of preference (``Bash``:
Claude Code's)."""

DEFAULT_COMMAND: Final = "echo spillgate-e2e"
DEFAULT_ANSWER: Final = "SPILLGATE-E2E-DONE"
DEFAULT_REASONING: Final = "I will run a command in the workspace to check it."
ECHO_PREFIX: Final = "tool output: "
"""Starts the line of the final answer that repeats the last tool output (``echo_output``)."""
ECHO_LIMIT: Final = 200
"""At most this many characters of the tool output are echoed."""


_FIELDS: Final = ("commands", "answer", "echo_output", "reasoning")


class ConversationError(ValueError):
    """A conversation setting that cannot be used; the message names the bad key."""


@dataclass(frozen=True, slots=True)
class Conversation:
    """A scripted multi-request coding turn, played in whichever API the request came on."""

    commands: tuple[str, ...] = (DEFAULT_COMMAND,)
    """One shell command per tool step, run in order; empty: answer at once."""
    answer: str = DEFAULT_ANSWER
    """The final assistant message once every command has been run."""
    echo_output: bool = True
    """Add a line ``tool output: <the last tool output>`` to the final answer."""
    reasoning: str = DEFAULT_REASONING
    """The reasoning that starts every scripted answer (a Responses reasoning item's summary, a
    Chat ``reasoning_content``, an Anthropic ``thinking`` block); empty: none."""

    def __post_init__(self) -> None:
        if isinstance(self.commands, str):  # a single command given bare
            object.__setattr__(self, "commands", (self.commands,))
        elif not isinstance(self.commands, tuple):
            object.__setattr__(self, "commands", tuple(self.commands))
        for command in self.commands:
            if not isinstance(command, str) or not command.strip():
                raise ConversationError(f"commands must be non-empty strings, got {command!r}")
        if not isinstance(self.answer, str) or not self.answer:
            raise ConversationError(f"answer must be a non-empty string, got {self.answer!r}")
        if not isinstance(self.reasoning, str):
            raise ConversationError(f"reasoning must be a string, got {self.reasoning!r}")

    # -- (de)serialisation ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: object, *, where: str = "conversation") -> Conversation:
        """``true`` or ``{}``: the defaults; a mapping of field names overrides them."""
        if data is True or data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConversationError(
                f"{where}: expected true or a mapping of conversation fields, got {data!r}"
            )
        unknown = [key for key in data if key not in _FIELDS]
        if unknown:
            raise ConversationError(
                f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(_FIELDS)}"
            )
        default = cls()
        commands = data.get("commands", list(default.commands))
        if isinstance(commands, str):
            commands = [commands]
        if not isinstance(commands, list) or not all(isinstance(c, str) and c.strip() for c in commands):
            raise ConversationError(f"{where}.commands: expected a list of commands, got {commands!r}")
        answer = data.get("answer", default.answer)
        if not isinstance(answer, str) or not answer:
            raise ConversationError(f"{where}.answer: expected a non-empty string, got {answer!r}")
        echo_output = data.get("echo_output", default.echo_output)
        if not isinstance(echo_output, bool):
            raise ConversationError(f"{where}.echo_output: expected true or false, got {echo_output!r}")
        reasoning = data.get("reasoning", default.reasoning)
        if not isinstance(reasoning, str):
            raise ConversationError(f"{where}.reasoning: expected a string, got {reasoning!r}")
        return cls(tuple(commands), answer, echo_output, reasoning)

    def to_dict(self) -> dict[str, JsonValue]:
        return {
            "commands": list[JsonValue](self.commands),
            "answer": self.answer,
            "echo_output": self.echo_output,
            "reasoning": self.reasoning,
        }

    # -- use -----------------------------------------------------------------------------------
    def reply(self, payload: Mapping[str, object], protocol: ApiProtocol = RESPONSES) -> Reply:
        """What the scripted model answers to ``payload``, a request of ``protocol``."""
        outputs = tool_outputs_of(payload, protocol)
        step = len(outputs)
        if step < len(self.commands):
            command = self.commands[step]
            call = shell_call(payload.get("tools"), command, step, protocol)
            if call is None:
                names = ", ".join(SHELL_TOOLS)
                return Reply(
                    self.reasoning,
                    None,
                    f"fake upstream: the request offers no shell tool ({names}) to run {command!r} with",
                    step,
                )
            return Reply(self.reasoning, call, None, step)
        text = self.answer
        if self.echo_output and outputs:
            text += "\n" + ECHO_PREFIX + _excerpt(outputs[-1])
        return Reply(self.reasoning, None, text, step)


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str
    """The arguments as the JSON text a model writes."""
    call_id: str
    """``call_…`` (OpenAI APIs) or ``toolu_…`` (Anthropic), stable for a step."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: an optional reasoning summary, then a tool call or a message."""

    reasoning: str
    call: ToolCall | None
    text: str | None
    step: int
    """How many tool outputs the request carried."""


def tool_outputs_of(payload: Mapping[str, object], protocol: ApiProtocol) -> list[str]:
    """The outputs of the tool calls in a request of ``protocol``, in order, as text."""
    if protocol == CHAT:
        return chat_tool_outputs(payload.get("messages"))
    if protocol == ANTHROPIC:
        return messages_tool_outputs(payload.get("messages"))
    return tool_outputs(payload.get("input"))


def tool_outputs(items: object) -> list[str]:
    """The outputs of the tool calls in a Responses ``input`` list, in order, as text."""
    if not isinstance(items, list):
        return []
    out: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if isinstance(kind, str) and kind.endswith("_call_output"):
            out.append(_output_text(item.get("output")))
    return out


def chat_tool_outputs(messages: object) -> list[str]:
    """The ``content`` of the ``role: "tool"`` messages of a Chat Completions ``messages`` list."""
    if not isinstance(messages, list):
        return []
    return [
        _output_text(message.get("content"))
        for message in messages
        if isinstance(message, dict) and message.get("role") == "tool"
    ]


def messages_tool_outputs(messages: object) -> list[str]:
    """The ``content`` of the ``tool_result`` blocks in the user messages of an Anthropic
    ``messages`` list."""
    if not isinstance(messages, list):
        return []
    out: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        blocks = message.get("content")
        if not isinstance(blocks, list):
            continue
        out.extend(
            _output_text(block.get("content"))
            for block in blocks
            if isinstance(block, dict) and block.get("type") == "tool_result"
        )
    return out


def _output_text(output: object) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):  # content items: [{"type": "input_text", "text": ...}, ...]
        return "".join(
            str(part.get("text", "")) for part in output if isinstance(part, dict) and "text" in part
        )
    if isinstance(output, dict):
        return str(output.get("content") or output.get("output") or "")
    return "" if output is None else str(output)


def _excerpt(output: str) -> str:
    """The part of a tool output worth echoing: Codex's ``exec_command`` prefixes the command's
    output with a header ending in ``Output:``; keep what follows, on one line."""
    marker = output.rfind("Output:\n")
    if marker >= 0:
        output = output[marker + len("Output:\n") :]
    flat = " ".join(output.split())
    return flat[:ECHO_LIMIT]


def shell_call(tools: object, command: str, step: int, protocol: ApiProtocol = RESPONSES) -> ToolCall | None:
    """A call of the shell tool in a ``protocol`` request's ``tools`` running ``command``;
    ``None`` when it offers none whose schema the fake can fill."""
    offered = offered_tools(tools, protocol)
    prefix = "toolu_" if protocol == ANTHROPIC else "call_"
    for name in SHELL_TOOLS:
        schema = offered.get(name)
        if schema is None:
            continue
        arguments = _shell_arguments(schema, command)
        if arguments is not None:
            return ToolCall(name, orjson.dumps(arguments).decode(), call_id(command, step, prefix))
    return None


def offered_tools(tools: object, protocol: ApiProtocol) -> dict[str, Mapping[str, object]]:
    """The function tools of a ``protocol`` request: name -> JSON schema of the arguments.

    Responses: ``{"type": "function", "name", "parameters"}``; Chat: ``{"type": "function",
    "function": {"name", "parameters"}}``; Anthropic: ``{"name", "input_schema"}`` (no ``type``, or
    ``custom``; server tools such as ``web_search_20250305`` have no schema and are skipped).
    """
    if not isinstance(tools, Sequence) or isinstance(tools, str):
        return {}
    out: dict[str, Mapping[str, object]] = {}
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if protocol == ANTHROPIC:
            spec, key = (tool, "input_schema") if tool.get("type") in (None, "custom") else ({}, "")
        elif tool.get("type") != "function":
            continue
        elif protocol == CHAT:
            function = tool.get("function")
            spec, key = (function, "parameters") if isinstance(function, dict) else ({}, "")
        else:
            spec, key = tool, "parameters"
        name, schema = spec.get("name"), spec.get(key)
        if isinstance(name, str) and isinstance(schema, dict):
            out[name] = schema
    return out


def _shell_arguments(schema: Mapping[str, object], command: str) -> dict[str, object] | None:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return None
    if "cmd" in properties:
        return {"cmd": command}
    spec = properties.get("command")
    if isinstance(spec, dict):
        if spec.get("type") == "array":
            return {"command": ["bash", "-lc", command]}
        return {"command": command}
    return None


def call_id(command: str, step: int, prefix: str = "call_") -> str:
    """A stable call id for a step: a retried request gets the same call (as a replay would)."""
    digest = hashlib.sha256(f"{step}\0{command}".encode()).hexdigest()[:24]
    return f"{prefix}{digest}"


def encrypted_reasoning(item_id: str, summary: str) -> str:
    """Opaque stand-in for a reasoning item's ``encrypted_content`` (the client sends it back)."""
    return base64.urlsafe_b64encode(orjson.dumps({"fake_reasoning": item_id, "summary": summary})).decode()


def thinking_signature(thinking: str) -> str:
    """Opaque stand-in for an Anthropic thinking block's ``signature`` (the client sends it back)."""
    digest = hashlib.sha256(thinking.encode()).hexdigest()[:32]
    return base64.b64encode(orjson.dumps({"fake_thinking": digest})).decode()
