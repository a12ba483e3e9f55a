"""OpenAI Chat Completions (``/v1/chat/completions``): its requests, stream events and errors."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spillgate.protocols.adapter import sse
from spillgate.protocols.apis import Api
from spillgate.protocols.events import Event, Kind, StreamTracker, count_field, load_payload, text_field
from spillgate.protocols.openai_family import OpenAIFamily, is_openai_reasoning_model
from spillgate.protocols.request import check_messages
from spillgate.protocols.usage import Usage, as_count

if TYPE_CHECKING:
    from spillgate.protocols.translate.codec import Codec


class ChatAdapter(OpenAIFamily):
    api = Api.OPENAI_CHAT
    title = "OpenAI Chat Completions"
    short_name = "chat"
    client_paths = ("/v1/chat/completions", "/chat/completions")
    upstream_suffix = "/chat/completions"
    family_default = True
    cli_name = "openai-chat"
    probe_fallback = Api.ANTHROPIC_MESSAGES

    @property
    def codec(self) -> Codec:
        from spillgate.protocols.translate.chat import CODEC  # the codec imports this package

        return CODEC

    def check_conversation(self, data: Mapping[str, Any]) -> None:
        check_messages(data)

    def session_key(self, data: Mapping[str, Any]) -> str | None:
        key = data.get("prompt_cache_key")
        return key if isinstance(key, str) and key else None

    def usage(self, usage: Any) -> Usage | None:
        return _usage(usage)

    def observe(self, t: StreamTracker, event: Event) -> Kind:
        if event.data == b"[DONE]":
            t.terminal_seen = True
            return Kind.TERMINAL
        payload = load_payload(event)
        if not isinstance(payload, dict):
            t.malformed += 1
            return Kind.MALFORMED
        if "error" in payload:
            t.error = payload
            return Kind.ERROR
        t.chunk_id = text_field(payload, "id", t.chunk_id)
        t.model = text_field(payload, "model", t.model)
        t.created = count_field(payload, "created", t.created)
        if payload.get("usage"):
            t.usage_seen = True
            t.usage = _usage(payload["usage"])
        choices = payload.get("choices")
        if not isinstance(choices, list):
            t.malformed += 1
            return Kind.MALFORMED
        kind: Kind | None = None
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                t.keep_text(content)
                kind = Kind.CONTENT
            if isinstance(delta, dict):
                if delta.get("tool_calls") or delta.get("function_call"):
                    t.non_text_output = True
                    kind = Kind.CONTENT
                if delta.get("reasoning_content") or delta.get("reasoning") or delta.get("refusal"):
                    t.non_text_output = True
                    kind = Kind.CONTENT
            if choice.get("finish_reason"):
                t.finished = True
                kind = Kind.CONTENT  # an empty answer is still an answer
        if kind is not None:
            return kind
        # A role-only chunk, a usage chunk, an empty delta.
        return Kind.PREAMBLE if not t.text_chars and not t.finished else Kind.META

    def text_delta(self, tracker: StreamTracker, text: str) -> bytes:
        tracker.keep_text(text)
        return sse(
            None,
            {
                "id": tracker.chunk_id or "chatcmpl-spillgate",
                "object": "chat.completion.chunk",
                "created": tracker.created or int(time.time()),
                "model": tracker.model or "",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            },
        )

    def stream_end(self, tracker: StreamTracker) -> bytes:
        return b"data: [DONE]\n\n"

    def in_band_error(self, tracker: StreamTracker, message: str) -> bytes:
        """An error chunk (the caller then closes without ``[DONE]``)."""
        return sse(
            None,
            {"error": {"message": message, "type": "server_error", "param": None, "code": "server_error"}},
        )

    def rewrite(self, tracker: StreamTracker, payload: Any, name: str | None, raw: bytes) -> bytes:
        """The chunk under the client's chunk id."""
        if not isinstance(payload, dict):
            return raw
        if tracker.chunk_id:
            payload = {**payload, "id": tracker.chunk_id}
        return sse(None, payload)

    def prefill(self, data: dict[str, Any], prefill: str) -> dict[str, Any] | None:
        """The assistant prefix as a last message with ``prefix: true`` (DeepSeek, Mistral, vLLM…)."""
        messages = list(data.get("messages") or [])
        messages.append({"role": "assistant", "content": prefill, "prefix": True})
        data["messages"] = messages
        return data

    def token_limit_field(self, model: str) -> str:
        return "max_completion_tokens" if is_openai_reasoning_model(model) else "max_tokens"

    def probe_body(self, model: str, prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            self.token_limit_field(model): max_tokens,
            "stream": stream,
        }


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = as_count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(as_count(usage.get("prompt_tokens")), as_count(usage.get("completion_tokens")), cached)


ADAPTER = ChatAdapter()
