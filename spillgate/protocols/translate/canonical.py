"""The canonical representation every wire API is translated through.

A client request is decoded from its API into a :class:`Request`, encoded as the upstream's
API; the upstream's answer is decoded into a :class:`Response` (or, streamed, into
:data:`StreamEvent` values as they arrive) and encoded as the client's. One codec per wire API
(``translate/chat.py``, ``translate/responses.py``, ``translate/messages.py``) does both
directions: three codecs, not six pairwise translators.

Everything here is plain frozen data. Conventions every codec keeps:

* **Order is meaning.** ``Request.messages`` keeps the client's order exactly, system and
  developer messages included (``instructions`` / Anthropic's ``system`` become the leading
  system message); an encoder that must move a system message says so in its docstring and
  does it the same way every time (byte-stable: the upstream's prompt cache keeps hitting).
* **Ids pair exactly.** A :class:`ToolCall`'s ``id`` and the :class:`ToolResult` answering it
  carry the same string; codecs never invent an id for a call that has one.
* **Tool calls' names are the flat names the upstream saw** (``namespace__name`` for a
  namespaced tool); :mod:`spillgate.protocols.translate.tools` maps them back to the
  client's own tool (namespace, custom tool) between decoding and encoding.
* **Opaque reasoning** (Responses' ``encrypted_content``, Anthropic's ``signature`` /
  ``redacted_thinking`` data) is kept with the family that made it (``origin``) and only
  encoded for an upstream of that family.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from spillgate.protocols.apis import ProviderProtocol

Role = Literal["system", "developer", "user", "assistant", "tool"]
"""``tool``: a message holding only :class:`ToolResult` parts (Chat's ``role: tool``, Responses'
``function_call_output`` items, Anthropic's ``tool_result`` blocks)."""

ToolKind = Literal["function", "custom"]
"""``custom``: a tool whose input is one free-form string (Codex's ``apply_patch``); carried to
APIs without such tools as a function tool with one string argument (see ``tools.py``)."""

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "refusal", "pause"]
"""Why the answer ended: ``stop`` (end of turn, stop sequence), ``length`` (the output limit:
Chat ``length``, Anthropic ``max_tokens``, Responses ``incomplete`` / ``max_output_tokens``),
``tool_calls``, ``content_filter``, ``refusal``, ``pause`` (Anthropic ``pause_turn``)."""


# -- content parts ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Text:
    text: str
    cache: bool = False
    """An Anthropic ``cache_control`` breakpoint after this block (carried to Messages only)."""


@dataclass(frozen=True, slots=True)
class Image:
    url: str
    """An ``http(s)://`` URL or a ``data:<media type>;base64,<data>`` URL."""
    detail: str | None = None
    """OpenAI's ``detail`` (``auto`` / ``low`` / ``high``), where the client gave it."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    """``call_…`` / ``toolu_…`` / whatever the API gave: never empty."""
    name: str
    arguments: str
    """The arguments as JSON text (a custom tool's call: its raw input string, ``kind`` custom)."""
    kind: ToolKind = "function"
    namespace: str | None = None
    """A Responses namespace tool's namespace (the client side only; see ``tools.py``)."""
    item_id: str | None = None
    """Responses' ``fc_…`` item id where the client sent one (kept for its own API only)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    output: str | tuple[Text | Image, ...]
    """The tool's output: text, or parts where the API allows them."""
    is_error: bool = False
    kind: ToolKind = "function"


@dataclass(frozen=True, slots=True)
class Reasoning:
    text: str
    """The readable reasoning: a Responses summary, an Anthropic thinking block, a Chat
    ``reasoning_content``. May be empty (only opaque reasoning)."""
    opaque: str | None = None
    """Responses ``encrypted_content``, an Anthropic thinking ``signature`` or the ``data`` of a
    ``redacted_thinking`` block."""
    origin: ProviderProtocol | None = None
    """The provider family that made ``opaque`` (it is meaningless to any other)."""
    redacted: bool = False
    """An Anthropic ``redacted_thinking`` block (``opaque`` holds its data)."""
    item_id: str | None = None
    """Responses' ``rs_…`` item id (kept for its own API only)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    text: str


Part = Text | Image | ToolCall | ToolResult | Reasoning | Refusal


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]
    name: str | None = None
    """Chat's optional participant ``name``."""


# -- tools ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the client offers. Hosted tools (``kind`` ``hosted``) run at the provider (web
    search, file search, computer use…): only their own API can carry them."""

    name: str
    kind: Literal["function", "custom", "hosted"] = "function"
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    """A function tool's JSON schema for its arguments."""
    strict: bool | None = None
    namespace: str | None = None
    """The Responses ``namespace`` tool this one belongs to."""
    namespace_description: str | None = None
    format: Mapping[str, Any] | None = None
    """A custom tool's input format (Codex: a Lark grammar), described to other APIs in words."""
    hosted: Mapping[str, Any] | None = None
    """A hosted tool's definition as the client sent it (``{"type": "web_search", ...}``)."""
    cache: bool = False
    """An Anthropic ``cache_control`` breakpoint on this tool."""


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None
    """With ``tool``: the tool's name (a hosted tool's type for a required hosted tool)."""
    hosted: bool = False
    """The required tool is a hosted one."""


@dataclass(frozen=True, slots=True)
class ReasoningConfig:
    effort: str | None = None
    """``minimal`` / ``low`` / ``medium`` / ``high`` (OpenAI)."""
    budget_tokens: int | None = None
    """Anthropic's thinking budget."""
    summary: bool = False
    """The client asked for readable reasoning (Responses ``summary``, Anthropic thinking)."""
    enabled: bool = True
    """``False``: the client turned thinking off (Anthropic ``disabled``)."""


@dataclass(frozen=True, slots=True)
class OutputFormat:
    kind: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: Mapping[str, Any] | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Request:
    model: str
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    reasoning: ReasoningConfig | None = None
    output_format: OutputFormat | None = None
    stream: bool = False
    include_usage: bool = False
    """Chat: ``stream_options.include_usage`` (the client wants the usage chunk)."""
    prompt_cache_key: str | None = None
    user: str | None = None
    """The end user (OpenAI ``user`` / ``safety_identifier``, Anthropic ``metadata.user_id``)."""
    previous_response_id: str | None = None
    """Responses' server-side conversation state: only a Responses upstream can carry it."""
    store: bool | None = None
    include_encrypted_reasoning: bool = False
    """Responses ``include: ["reasoning.encrypted_content"]``."""
    source_family: ProviderProtocol | None = None
    """The family of the client's API (opaque reasoning of that family may pass)."""
    untranslatable: tuple[str, ...] = ()
    """What only the client's own API can carry (``previous_response_id``, a document block,
    ``n`` > 1…), in words: a route of another API is skipped with these as the reason."""
    droppable: tuple[str, ...] = ()
    """What only the client's own API can carry but the request means the same without
    (hosted tools' results in the history…): left out elsewhere, the omission recorded."""


# -- answers ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    """Every input token, cached ones included (OpenAI's convention; Anthropic's
    ``input_tokens`` excludes cache reads and writes: its codec adds them)."""
    output_tokens: int = 0
    """Every output token, reasoning included."""
    cached_tokens: int = 0
    """Input tokens read from the prompt cache."""
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (Anthropic ``cache_creation_input_tokens``)."""
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Response:
    id: str | None
    model: str | None
    parts: tuple[Text | ToolCall | Reasoning | Refusal, ...]
    finish: FinishReason = "stop"
    usage: Usage | None = None
    created: int | None = None


# -- stream events ------------------------------------------------------------------------------
# A decoded stream is: Start, then blocks, then Finish, UsageReport(s), End; or a StreamError
# anywhere. Blocks never interleave: a decoder stops one block (BlockStop) before the next
# BlockStart, and every block started is stopped before Finish. Block indexes count from 0 in
# the order blocks start; an encoder numbers them in its own API's way.
BlockKind = Literal["text", "tool", "reasoning", "refusal"]


@dataclass(frozen=True, slots=True)
class Start:
    """The answer began (``response.created``, ``message_start``, the first Chat chunk)."""

    id: str | None = None
    model: str | None = None
    usage: Usage | None = None
    """Input usage where the upstream reports it up front (Anthropic's ``message_start``)."""


@dataclass(frozen=True, slots=True)
class BlockStart:
    """A block of output began. Blocks are numbered 0, 1, 2… in the order they start."""

    index: int
    kind: BlockKind
    call_id: str | None = None
    """``tool``: the call's id (never empty: a decoder makes one if the upstream gave none)."""
    name: str | None = None
    """``tool``: the tool's name (the flat name from an upstream; the client's own name, with
    ``namespace``, once ``tools.py`` has mapped it back)."""
    tool_kind: ToolKind = "function"
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class BlockDelta:
    """More of a block: text, a tool call's argument JSON, reasoning text, refusal text."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class BlockOpaque:
    """A block's opaque reasoning (signature / encrypted content), from ``origin``."""

    index: int
    opaque: str
    origin: ProviderProtocol
    redacted: bool = False


@dataclass(frozen=True, slots=True)
class BlockStop:
    index: int


@dataclass(frozen=True, slots=True)
class Finish:
    """The answer is complete (its usage may still follow)."""

    reason: FinishReason


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Usage so far; a later report replaces the fields it has (non-zero)."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class End:
    """The normal end of the stream ([DONE], ``response.completed``, ``message_stop``)."""


@dataclass(frozen=True, slots=True)
class StreamError:
    """An in-stream failure, with the upstream's own words (the classifier reads them)."""

    message: str
    type: str | None = None
    code: str | None = None


StreamEvent = (
    Start | BlockStart | BlockDelta | BlockOpaque | BlockStop | Finish | UsageReport | End | StreamError
)


# -- what could not be carried ------------------------------------------------------------------
class Uncarriable(ValueError):
    """The request has something the target API cannot carry at all: the route is skipped with
    this reason (never silently dropped)."""


@dataclass(slots=True)
class Carried:
    """What an encoder left out of the target's request because the target lacks it, though the
    request still means the same (recorded on the attempt)."""

    omitted: list[str] = field(default_factory=list)

    def omit(self, what: str) -> None:
        if what not in self.omitted:
            self.omitted.append(what)


def merge_usage(old: Usage | None, new: Usage) -> Usage:
    """``new``'s non-zero fields over ``old`` (Anthropic reports input at the start, output at the end)."""
    if old is None:
        return new
    return Usage(
        new.input_tokens or old.input_tokens,
        new.output_tokens or old.output_tokens,
        new.cached_tokens or old.cached_tokens,
        new.cache_write_tokens or old.cache_write_tokens,
        new.reasoning_tokens or old.reasoning_tokens,
    )
