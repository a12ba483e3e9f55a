"""A fault-injecting fake LLM upstream (OpenAI Chat Completions, OpenAI Responses, Anthropic
Messages) for tests and demos."""

from spillgate.fake.attempts import AttemptRecord
from spillgate.fake.behavior import (
    HEALTHY,
    Fault,
    FaultConfigError,
    load_behaviors,
    parse_behaviors,
)
from spillgate.fake.content import DEFAULT_CHUNKS, DEFAULT_TEXT, MALFORMED_FRAME
from spillgate.fake.conversation import Conversation, ConversationError
from spillgate.fake.protocol import ApiProtocol, JsonValue
from spillgate.fake.server import WILDCARD, FakeUpstream, serve

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_TEXT",
    "HEALTHY",
    "MALFORMED_FRAME",
    "WILDCARD",
    "ApiProtocol",
    "AttemptRecord",
    "Conversation",
    "ConversationError",
    "FakeUpstream",
    "Fault",
    "FaultConfigError",
    "JsonValue",
    "load_behaviors",
    "parse_behaviors",
    "serve",
]
