"""A request's input tokens estimated from its canonical form, where no upstream counted them.

About four characters a token for text and JSON (the usual figure for English and code with
the OpenAI and Anthropic tokenizers), a few tokens of framing per message and tool, and a flat
figure per image. It is an estimate, and every answer built on it says so.
"""

from __future__ import annotations

import math

import orjson

from spillgate.protocols.translate.canonical import (
    Image,
    Reasoning,
    Refusal,
    Request,
    Text,
    ToolCall,
    ToolResult,
)

CHARS_PER_TOKEN = 4.0
PER_MESSAGE = 4
"""Role and separators of one message."""
PER_TOOL = 8
"""A tool definition's framing beyond its name, description and schema."""
PER_IMAGE = 1000
"""An image of ordinary size (Anthropic: about 1,600 at most; OpenAI ``auto``: 85 to ~1,100)."""


def estimate_input_tokens(request: Request) -> int:
    chars = 0
    tokens = 0
    for message in request.messages:
        tokens += PER_MESSAGE
        for part in message.parts:
            if isinstance(part, Text | Refusal | Reasoning):
                chars += len(part.text)
            elif isinstance(part, ToolCall):
                chars += len(part.name) + len(part.arguments)
            elif isinstance(part, ToolResult):
                if isinstance(part.output, str):
                    chars += len(part.output)
                else:
                    for inner in part.output:
                        if isinstance(inner, Image):
                            tokens += PER_IMAGE
                        else:
                            chars += len(inner.text)
            elif isinstance(part, Image):
                tokens += PER_IMAGE
    for tool in request.tools:
        tokens += PER_TOOL
        chars += len(tool.name) + len(tool.description or "")
        if tool.parameters is not None:
            chars += len(orjson.dumps(tool.parameters, default=str))
    return tokens + math.ceil(chars / CHARS_PER_TOKEN)
