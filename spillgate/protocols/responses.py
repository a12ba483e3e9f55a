"""OpenAI Responses (``/v1/responses``, Codex): its requests, stream events and errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spillgate.protocols.adapter import next_sequence, sse
from spillgate.protocols.apis import Api
from spillgate.protocols.errors import invalid
from spillgate.protocols.events import (
    Event,
    Kind,
    StreamTracker,
    count_field,
    text_field,
    typed_payload,
)
from spillgate.protocols.openai_family import OpenAIFamily
from spillgate.protocols.request import describe_type
from spillgate.protocols.synth import renumber
from spillgate.protocols.usage import Usage, as_count

if TYPE_CHECKING:
    from spillgate.protocols.translate.codec import Codec

_MESSAGE_EVENTS = ("response.output_text.", "response.content_part.")
"""Events about the answer message, whose item id the client already knows."""


class ResponsesAdapter(OpenAIFamily):
    api = Api.OPENAI_RESPONSES
    title = "OpenAI Responses"
    short_name = "responses"
    client_paths = ("/v1/responses", "/responses")
    upstream_suffix = "/responses"
    stop_code = "server_is_overloaded"
    """Codex (deaf to ``x-should-retry``) takes it as final: "Selected model is at capacity."."""
    continuable = False
    """A Responses request has no assistant prefill."""
    cli_name = "openai-responses"
    probe_fallback = Api.OPENAI_CHAT

    @property
    def codec(self) -> Codec:
        from spillgate.protocols.translate.responses import CODEC  # the codec imports this package

        return CODEC

    def check_conversation(self, data: Mapping[str, Any]) -> None:
        value = data.get("input")
        if value is not None and not isinstance(value, str | list):
            raise invalid(
                f"'input' must be a string or a list of items, got {describe_type(value)}", param="input"
            )

    def session_key(self, data: Mapping[str, Any]) -> str | None:
        key = data.get("prompt_cache_key")
        return key if isinstance(key, str) and key else None

    def usage(self, usage: Any) -> Usage | None:
        return _usage(usage)

    def observe(self, t: StreamTracker, event: Event) -> Kind:
        typed = typed_payload(t, event)
        if typed is None:
            return Kind.MALFORMED
        payload, kind_name = typed
        t.sequence_number = count_field(payload, "sequence_number", t.sequence_number)
        if kind_name in ("response.created", "response.in_progress", "response.queued"):
            response = payload.get("response")
            if isinstance(response, dict):
                t.response_id = text_field(response, "id", t.response_id)
                t.model = text_field(response, "model", t.model)
            return Kind.PREAMBLE
        if kind_name == "response.output_item.added":
            item = payload.get("item")
            t.output_index = count_field(payload, "output_index", t.output_index)
            if isinstance(item, dict):
                t.item_id = text_field(item, "id", t.item_id)
                if item.get("type") not in (None, "message", "reasoning"):
                    t.non_text_output = True
                    return Kind.CONTENT
            return Kind.PREAMBLE if not t.text_chars else Kind.META
        if kind_name == "response.content_part.added":
            t.content_index = count_field(payload, "content_index", t.content_index)
            return Kind.PREAMBLE if not t.text_chars else Kind.META
        if kind_name == "response.output_text.delta":
            delta = payload.get("delta")
            if not isinstance(delta, str):
                t.malformed += 1
                return Kind.MALFORMED
            t.keep_text(delta)
            t.item_id = text_field(payload, "item_id", t.item_id)
            return Kind.CONTENT
        if kind_name.endswith(".delta"):
            t.non_text_output = True  # reasoning, tool call arguments, audio...
            return Kind.CONTENT
        if kind_name == "response.output_item.done":
            item = payload.get("item")
            if isinstance(item, dict) and item.get("type") not in (None, "message"):
                t.non_text_output = True
            return Kind.CONTENT
        if kind_name in ("response.completed", "response.incomplete"):
            t.terminal_seen = t.finished = t.usage_seen = True
            response = payload.get("response")
            if isinstance(response, dict):
                t.usage = _usage(response.get("usage"))
            return Kind.TERMINAL
        if kind_name in ("response.failed", "error"):
            t.error = payload
            return Kind.ERROR
        return Kind.META

    def text_delta(self, tracker: StreamTracker, text: str) -> bytes:
        tracker.keep_text(text)
        return sse(
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "item_id": tracker.item_id or "msg_spillgate",
                "output_index": tracker.output_index,
                "content_index": tracker.content_index,
                "delta": text,
                "sequence_number": next_sequence(tracker),
            },
        )

    def stream_end(self, tracker: StreamTracker) -> bytes:
        return b""  # only the upstream's response.completed can end it

    def in_band_error(self, tracker: StreamTracker, message: str) -> bytes:
        """``response.failed`` with code ``server_error``: Codex retries it (never
        ``server_is_overloaded``, which it treats as fatal)."""
        return sse(
            "response.failed",
            {
                "type": "response.failed",
                "sequence_number": next_sequence(tracker),
                "response": {
                    "id": tracker.response_id or "resp_spillgate",
                    "object": "response",
                    "status": "failed",
                    "model": tracker.model,
                    "output": [],
                    "error": {"code": "server_error", "message": message},
                },
            },
        )

    def rewrite(self, tracker: StreamTracker, payload: Any, name: str | None, raw: bytes) -> bytes:
        """The event under the client's response id and message item id, renumbered."""
        if not isinstance(payload, dict):
            return raw
        response = payload.get("response")
        if isinstance(response, dict) and tracker.response_id:
            payload = {**payload, "response": {**response, "id": tracker.response_id}}
        kind = str(payload.get("type", ""))
        if "item_id" in payload and tracker.item_id and kind.startswith(_MESSAGE_EVENTS):
            payload = {**payload, "item_id": tracker.item_id}
        item = payload.get("item")
        if isinstance(item, dict) and item.get("type") == "message" and tracker.item_id:
            payload = {**payload, "item": {**item, "id": tracker.item_id}}
        return renumber(tracker, payload, name)

    def prefill(self, data: dict[str, Any], prefill: str) -> dict[str, Any] | None:
        return None

    def token_limit_field(self, model: str) -> str:
        return "max_output_tokens"

    def probe_body(self, model: str, prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
        return {
            "model": model,
            "input": prompt,
            "store": False,
            self.token_limit_field(model): max_tokens,
            "stream": stream,
        }

    def claims_model(self, model: str) -> bool:
        """Codex models are served on the Responses API only (Codex CLI speaks nothing else)."""
        return "codex" in model.lower()


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details")
    cached = as_count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(as_count(usage.get("input_tokens")), as_count(usage.get("output_tokens")), cached)


ADAPTER = ResponsesAdapter()
