"""Anthropic Messages (``/v1/messages``, Claude Code): its requests, stream events and errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spillgate.protocols.adapter import WireAdapter, sse
from spillgate.protocols.apis import Api, ProviderProtocol
from spillgate.protocols.events import (
    Event,
    Kind,
    StreamTracker,
    count_field,
    text_field,
    typed_payload,
)
from spillgate.protocols.request import check_messages
from spillgate.protocols.usage import Usage, as_count

if TYPE_CHECKING:
    from spillgate.protocols.translate.codec import Codec

ANTHROPIC_VERSION = "2023-06-01"
"""Sent upstream when the client named no ``anthropic-version``."""


class MessagesAdapter(WireAdapter):
    api = Api.ANTHROPIC_MESSAGES
    title = "Anthropic Messages"
    short_name = "messages"
    counts_tokens = True
    client_paths = ("/v1/messages",)
    upstream_suffix = "/v1/messages"
    family: ProviderProtocol = "anthropic"
    family_default = True
    provider_base_path = ""
    models_suffix = "/v1/models"
    capacity_status = 529
    """Claude Code and the Anthropic SDKs know 529 as "overloaded"."""
    cli_name = "anthropic"
    probe_fallback = Api.OPENAI_CHAT

    @property
    def codec(self) -> Codec:
        from spillgate.protocols.translate.messages import CODEC  # the codec imports this package

        return CODEC

    def check_conversation(self, data: Mapping[str, Any]) -> None:
        check_messages(data)

    def session_key(self, data: Mapping[str, Any]) -> str | None:
        metadata = data.get("metadata")
        if isinstance(metadata, dict):
            user = metadata.get("user_id")
            if isinstance(user, str) and user:
                return user
        return None

    def usage(self, usage: Any) -> Usage | None:
        return _usage(usage)

    def observe(self, t: StreamTracker, event: Event) -> Kind:
        typed = typed_payload(t, event)
        if typed is None:
            return Kind.MALFORMED
        payload, kind_name = typed
        if kind_name == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                t.response_id = text_field(message, "id", t.response_id)
                t.model = text_field(message, "model", t.model)
                t.usage = _usage(message.get("usage"))
            return Kind.PREAMBLE
        if kind_name == "content_block_start":
            t.block_index = count_field(payload, "index", t.block_index)
            block = payload.get("content_block")
            if isinstance(block, dict) and block.get("type") not in (None, "text", "thinking"):
                t.non_text_output = True
                return Kind.CONTENT
            return Kind.PREAMBLE if not t.text_chars else Kind.META
        if kind_name == "content_block_delta":
            delta = payload.get("delta")
            t.block_index = count_field(payload, "index", t.block_index)
            if isinstance(delta, dict):
                if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                    t.keep_text(delta["text"])
                else:  # input_json_delta, thinking_delta, signature_delta...
                    t.non_text_output = True
            return Kind.CONTENT
        if kind_name == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                t.finished = True
            t.usage_seen = True
            later = _usage(payload.get("usage"))
            if later is not None:
                t.usage = later if t.usage is None else t.usage.merge(later)
            return Kind.CONTENT if t.finished else Kind.META
        if kind_name == "message_stop":
            t.terminal_seen = True
            return Kind.TERMINAL
        if kind_name == "error":
            t.error = payload
            return Kind.ERROR
        if kind_name == "ping":
            return Kind.META if t.text_chars else Kind.PREAMBLE
        return Kind.META

    def text_delta(self, tracker: StreamTracker, text: str) -> bytes:
        tracker.keep_text(text)
        return sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": tracker.block_index,
                "delta": {"type": "text_delta", "text": text},
            },
        )

    def stream_end(self, tracker: StreamTracker) -> bytes:
        return sse("message_stop", {"type": "message_stop"})

    def in_band_error(self, tracker: StreamTracker, message: str) -> bytes:
        """``event: error`` with ``overloaded_error`` (Claude Code retries it)."""
        return sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": message}})

    def rewrite(self, tracker: StreamTracker, payload: Any, name: str | None, raw: bytes) -> bytes:
        """As it came: Anthropic events carry no stream-wide ids or sequence."""
        return raw

    def prefill(self, data: dict[str, Any], prefill: str) -> dict[str, Any] | None:
        """The prefix appended to a trailing assistant text message, else as a new last one."""
        messages = list(data.get("messages") or [])
        last = messages[-1] if messages else None
        if (
            isinstance(last, dict)
            and last.get("role") == "assistant"
            and isinstance(last.get("content"), str)
        ):
            messages[-1] = {**last, "content": last["content"] + prefill}
        else:
            messages.append({"role": "assistant", "content": prefill})
        data["messages"] = messages
        return data

    def auth_headers(self, secret: str | None, client_headers: Mapping[str, str]) -> list[tuple[str, str]]:
        out = [] if "anthropic-version" in client_headers else [("anthropic-version", ANTHROPIC_VERSION)]
        if secret is not None:
            out.append(("x-api-key", secret))
        return out

    def probe_body(self, model: str, prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            self.token_limit_field(model): max_tokens,
            "stream": stream,
        }

    def claims_model(self, model: str) -> bool:
        return model.lower().startswith("claude")

    def claims_host(self, host: str) -> bool:
        return "anthropic" in host.lower()


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    return Usage(
        as_count(usage.get("input_tokens")),
        as_count(usage.get("output_tokens")),
        as_count(usage.get("cache_read_input_tokens")),
        as_count(usage.get("cache_creation_input_tokens")),
    )


ADAPTER = MessagesAdapter()
