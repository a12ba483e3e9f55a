"""A fault-injecting fake LLM upstream (OpenAI Chat Completions, OpenAI Responses, Anthropic
Messages) for tests and demos."""

from spillgate.fake.attempts import AttemptRecord
from spillgate.fake.behavior import (
    HEALTHY,
    Fault,
    FaultConfigError,
    JsonValue,
    load_behaviors,
    parse_behaviors,
)
from spillgate.fake.content import DEFAULT_CHUNKS, DEFAULT_TEXT, MALFORMED_FRAME
from spillgate.fake.protocol import ApiProtocol
from spillgate.fake.server import WILDCARD, FakeUpstream, serve

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_TEXT",
    "HEALTHY",
    "MALFORMED_FRAME",
    "WILDCARD",
    "ApiProtocol",
    "AttemptRecord",
    "FakeUpstream",
    "Fault",
    "FaultConfigError",
    "JsonValue",
    "load_behaviors",
    "parse_behaviors",
    "serve",
]
