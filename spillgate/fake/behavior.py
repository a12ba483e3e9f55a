"""What the fake upstream does for a model: the :class:`Fault` dataclass, presets and parsing."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeAlias, cast

import orjson
import yaml

from spillgate.fake.content import (
    DEFAULT_CHUNKS,
    DEFAULT_TEXT,
    split_text,
    stream_error_defaults,
    stream_error_json,
)
from spillgate.fake.conversation import Conversation, ConversationError
from spillgate.fake.protocol import (
    ANTHROPIC,
    API_NAMES,
    CHAT,
    PROTOCOL_BY_API,
    ApiName,
    ApiProtocol,
    JsonValue,
    error_json,
)
from spillgate.typenames import type_name
from spillgate.validation import (
    ValidationError,
    check_keys,
    require_bool,
    require_duration,
    require_int,
    require_mapping,
    require_ratio,
    require_scalar,
    require_str,
)

FaultBody: TypeAlias = "bytes | str | dict[str, JsonValue] | list[JsonValue] | None"


class FaultConfigError(ValidationError):
    """A fault or behaviours file that cannot be used; the message names the bad key."""


@dataclass(frozen=True, slots=True)
class Fault:
    """How the fake answers requests for one model. The defaults are a healthy upstream.

    Which requests a fault applies to is decided by ``rate``, ``times`` and ``for_seconds``
    (all counted from when the fault was set); the others get a healthy answer made of
    ``text`` split into ``chunks`` deltas. Event indexes count every SSE frame written,
    starting at 0.
    """

    status: int | None = None
    """Answer with this HTTP status instead of success."""
    body: FaultBody = None
    """The body sent with ``status``; unset: an error in the request protocol's shape."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers (sent on every response the fault applies to)."""
    error_type: str | None = None
    """Overrides the generated error body's type (OpenAI ``error.type``, Anthropic ``error.type``)."""
    error_code: str | None = None
    """Overrides the generated OpenAI error body's ``error.code``."""
    error_message: str | None = None
    """Overrides the generated error body's message."""
    reset_before_headers: bool = False
    never_answer: bool = False
    headers_delay: float = 0.0
    first_content_delay: float = 0.0
    event_delay: float = 0.0
    cut_after_events: int | None = None
    stall_after_events: int | None = None
    malformed_at_event: int | None = None
    omit_done: bool = False
    """Leave out the stream's last event: ``[DONE]``, ``response.completed`` or ``message_stop``."""
    stream_error_after_events: int | None = None
    stream_error_code: str | None = None
    stream_error_message: str | None = None
    reject_prefill: bool = False
    """Answer 400 to every request that ends with an assistant message to continue (a prefill),
    like an upstream that does not support it; other requests are served as usual."""
    rate: float = 1.0
    times: int | None = None
    for_seconds: float | None = None
    text: str = DEFAULT_TEXT
    chunks: int = DEFAULT_CHUNKS
    conversation: Conversation | None = None
    """Answer with this scripted coding turn (a shell tool call, then a final message) instead of
    ``text``, in whichever API the request came on; faults still apply on top of it."""
    apis: tuple[ApiName, ...] = API_NAMES
    """The APIs served for this model (``chat``, ``responses``, ``messages``); a request on the
    path of another gets a 404 in that path's error shape, like a server that only has some of
    them (llama.cpp's answers ``/v1/chat/completions`` and 404s ``/v1/responses``). Set on
    ``"*"``, it is the whole server's. Unlike the faults it applies to every request (``rate``,
    ``times`` and ``for_seconds`` do not gate it)."""

    # Derived in __post_init__ so the request path does no extra work.
    deltas: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """``text`` split into the deltas of a streamed answer."""
    active: bool = field(init=False, repr=False, compare=False)
    """Whether applying this fault changes anything beyond the answer's text."""
    _rate: tuple[int, int] = field(init=False, repr=False, compare=False)
    _status_bodies: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)
    served: frozenset[ApiProtocol] = field(init=False, repr=False, compare=False)
    """The protocols of ``apis``."""

    PRESETS: ClassVar[tuple[str, ...]] = (
        "healthy",
        "capacity",
        "overloaded",
        "rate_limited",
        "server_error",
        "reset",
        "hang",
    )

    def __post_init__(self) -> None:
        if isinstance(self.headers, Mapping):  # tolerate a dict, though the field is typed as pairs
            object.__setattr__(self, "headers", tuple(self.headers.items()))
        if isinstance(self.apis, str):  # a single API given bare
            object.__setattr__(self, "apis", (self.apis,))
        self._validate()
        # One spelling per set of APIs, so that equal settings compare equal.
        apis = tuple(name for name in API_NAMES if name in self.apis)
        object.__setattr__(self, "apis", apis)
        object.__setattr__(self, "served", frozenset(PROTOCOL_BY_API[name] for name in apis))
        headers = tuple((name.lower(), value) for name, value in self.headers)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "deltas", split_text(self.text, self.chunks))
        ratio = Fraction(self.rate).limit_denominator(1_000_000)
        object.__setattr__(self, "_rate", (ratio.numerator, ratio.denominator))
        active = bool(
            self.status is not None
            or self.headers
            or self.reset_before_headers
            or self.never_answer
            or self.headers_delay
            or self.first_content_delay
            or self.event_delay
            or self.cut_after_events is not None
            or self.stall_after_events is not None
            or self.malformed_at_event is not None
            or self.omit_done
            or self.stream_error_after_events is not None
        )
        object.__setattr__(self, "active", active)
        bodies = (b"", b"")
        if self.status is not None:
            bodies = (self._render_status_body(CHAT), self._render_status_body(ANTHROPIC))
        object.__setattr__(self, "_status_bodies", bodies)

    def _validate(self) -> None:
        if self.status is not None and not (100 <= self.status <= 599):
            raise ValueError(f"status must be an HTTP status between 100 and 599, got {self.status}")
        for name in ("headers_delay", "first_content_delay", "event_delay", "for_seconds"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        for name in (
            "cut_after_events",
            "stall_after_events",
            "malformed_at_event",
            "stream_error_after_events",
            "times",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if self.conversation is not None and not isinstance(self.conversation, Conversation):
            raise ValueError(f"conversation must be a Conversation, got {self.conversation!r}")
        if not (0.0 <= self.rate <= 1.0):
            raise ValueError(f"rate must be between 0 and 1, got {self.rate!r}")
        if self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {self.chunks!r}")
        for pair in self.headers:
            if len(pair) != 2 or not all(isinstance(part, str) for part in pair):
                raise ValueError(f"headers must be (name, value) string pairs, got {pair!r}")
        if (
            isinstance(self.apis, Mapping)
            or not isinstance(self.apis, Collection)
            or not self.apis
            or not all(name in API_NAMES for name in self.apis)
        ):
            raise ValueError(f"apis must be one or more of {', '.join(API_NAMES)}, got {self.apis!r}")

    # -- presets -------------------------------------------------------------------------
    @classmethod
    def healthy(cls, *, text: str = DEFAULT_TEXT, chunks: int = DEFAULT_CHUNKS) -> Fault:
        return cls(text=text, chunks=chunks)

    @classmethod
    def capacity(
        cls, *, rate: float = 1.0, times: int | None = None, for_seconds: float | None = None
    ) -> Fault:
        """503: OpenAI ``server_is_overloaded`` ("Selected model is at capacity…"),
        Anthropic ``overloaded_error``."""
        return cls(
            status=503, error_code="server_is_overloaded", rate=rate, times=times, for_seconds=for_seconds
        )

    @classmethod
    def overloaded(
        cls, *, rate: float = 1.0, times: int | None = None, for_seconds: float | None = None
    ) -> Fault:
        """529 ``overloaded_error`` (Anthropic's overload; an OpenAI ``server_error`` on OpenAI paths)."""
        return cls(status=529, rate=rate, times=times, for_seconds=for_seconds)

    @classmethod
    def rate_limited(
        cls,
        retry_after: float | None = None,
        *,
        rate: float = 1.0,
        times: int | None = None,
        for_seconds: float | None = None,
    ) -> Fault:
        """429 with the protocol's rate-limit error; a ``retry-after`` header only when given."""
        headers: tuple[tuple[str, str], ...] = ()
        if retry_after is not None:
            value = str(int(retry_after)) if float(retry_after).is_integer() else repr(float(retry_after))
            headers = (("retry-after", value),)
        return cls(status=429, headers=headers, rate=rate, times=times, for_seconds=for_seconds)

    @classmethod
    def server_error(
        cls,
        status: int = 500,
        *,
        rate: float = 1.0,
        times: int | None = None,
        for_seconds: float | None = None,
    ) -> Fault:
        """A 5xx with the protocol's generic server error body."""
        return cls(status=status, rate=rate, times=times, for_seconds=for_seconds)

    @classmethod
    def reset(cls, *, rate: float = 1.0, times: int | None = None, for_seconds: float | None = None) -> Fault:
        """Read the request, then reset the TCP connection."""
        return cls(reset_before_headers=True, rate=rate, times=times, for_seconds=for_seconds)

    @classmethod
    def hang(cls, *, rate: float = 1.0, times: int | None = None, for_seconds: float | None = None) -> Fault:
        """Read the request and never answer."""
        return cls(never_answer=True, rate=rate, times=times, for_seconds=for_seconds)

    def with_conversation(self, conversation: Conversation | None = None) -> Fault:
        """This fault answering Responses requests with a scripted coding turn (default: one
        ``echo spillgate-e2e`` through the shell tool, then ``SPILLGATE-E2E-DONE``)."""
        return dataclasses.replace(self, conversation=conversation or Conversation())

    # -- use -----------------------------------------------------------------------------
    def applies(self, index: int, elapsed: float) -> bool:
        """Whether the ``index``-th (0-based) request since the fault was set, ``elapsed`` seconds
        after it was set, gets the fault. ``rate`` is spread evenly, not randomly: request n is
        faulty iff ``floor((n+1)*rate) > floor(n*rate)``."""
        if self.times is not None and index >= self.times:
            return False
        if self.for_seconds is not None and elapsed >= self.for_seconds:
            return False
        num, den = self._rate
        return (index + 1) * num // den > index * num // den

    def serves(self, protocol: ApiProtocol) -> bool:
        """Whether requests of ``protocol`` are served (see ``apis``)."""
        return protocol in self.served

    def status_body(self, protocol: ApiProtocol) -> bytes:
        """The body to send with ``status`` on a request of ``protocol``."""
        return self._status_bodies[1] if protocol == ANTHROPIC else self._status_bodies[0]

    def _render_status_body(self, protocol: ApiProtocol) -> bytes:
        body = self.body
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
        if body is not None:
            return orjson.dumps(body)
        assert self.status is not None
        return error_json(
            protocol,
            self.status,
            message=self.error_message,
            error_type=self.error_type,
            code=self.error_code,
        )

    def stream_error(self, protocol: ApiProtocol) -> tuple[str, str]:
        """(code, message) of this fault's in-stream failure on ``protocol``."""
        code, message = stream_error_defaults(protocol)
        return self.stream_error_code or code, self.stream_error_message or message

    def stream_error_response(self, protocol: ApiProtocol) -> tuple[int, bytes]:
        """The in-stream failure as a whole HTTP error (for requests that do not stream)."""
        return stream_error_json(protocol, *self.stream_error(protocol))

    # -- (de)serialisation ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: object, *, where: str = "fault") -> Fault:
        """Build a fault from a JSON/YAML mapping of field names (plus ``preset``).

        ``{"preset": "rate_limited", "retry_after": 2, "times": 3}`` starts from a preset and
        overrides its fields. Raises :class:`FaultConfigError` naming the bad key.
        """
        if data is None:
            return cls()
        try:
            given = require_mapping(data, where, what="a mapping of fault fields", none_ok=False)
            check_keys(given, where, _KEYS)
            changes: dict[str, Any] = {
                name: _CONVERTERS[name](value, f"{where}.{name}") for name, value in given.items()
            }
        except FaultConfigError:
            raise
        except ValidationError as exc:
            raise FaultConfigError(str(exc)) from None
        preset = cast("str | None", changes.pop("preset", None))
        retry_after = cast("float | None", changes.pop("retry_after", None))
        if retry_after is not None and preset != "rate_limited":
            raise FaultConfigError(f"{where}.retry_after: only valid with preset 'rate_limited'")
        try:
            if preset == "rate_limited":
                base = cls.rate_limited(retry_after)
            elif preset is not None and preset != "healthy":
                base = getattr(cls, preset)()
            else:
                base = cls()
            return dataclasses.replace(base, **changes)
        except ValueError as exc:
            raise FaultConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, JsonValue]:
        """The fields that differ from a healthy default, JSON-ready (``from_dict`` reads it back)."""
        out: dict[str, JsonValue] = {}
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            elif f.name == "headers":
                value = dict(value)
            elif isinstance(value, Conversation):
                value = value.to_dict()
            elif f.name == "apis":
                value = list(value)
            out[f.name] = value
        return out


HEALTHY = Fault()
"""The shared healthy behaviour."""


# -- parsing helpers ------------------------------------------------------------------------------


def _preset(value: object, where: str) -> str:
    name = value.replace("-", "_") if isinstance(value, str) else None
    if name not in Fault.PRESETS:
        raise FaultConfigError(
            f"{where}: unknown preset {value!r}; expected one of {', '.join(Fault.PRESETS)}"
        )
    return name


def _optional(check: Callable[[object, str], object]) -> Callable[[object, str], object]:
    return lambda value, where: None if value is None else check(value, where)


def _body(value: object, where: str) -> object:
    if value is None or isinstance(value, bytes | str | dict | list):
        return value
    raise FaultConfigError(f"{where}: expected a string or a JSON object/array, got {value!r}")


def _conversation(value: object, where: str) -> Conversation | None:
    if value is None or value is False:
        return None
    try:
        return Conversation.from_dict(value, where=where)
    except ConversationError as exc:
        raise FaultConfigError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


def _apis(value: object, where: str) -> tuple[ApiName, ...]:
    names = ", ".join(API_NAMES)
    given = [value] if isinstance(value, str) else value
    if not isinstance(given, list):
        raise FaultConfigError(
            f"{where}: expected a list of API names ({names}), got {type_name(value, show_value=True)}"
        )
    if not given:
        raise FaultConfigError(f"{where}: expected at least one API ({names}), got an empty list")
    out: list[ApiName] = []
    for item in given:
        name = next((api for api in API_NAMES if api == item), None)
        if name is None:
            raise FaultConfigError(f"{where}: unknown API {item!r}; expected some of {names}")
        out.append(name)
    return tuple(out)


def _headers(value: object, where: str) -> tuple[tuple[str, str], ...]:
    what = "a mapping of header names to values"
    headers = require_mapping(value, where, what=what, show_value=True)
    return tuple(
        (name, require_scalar(item, f"{where}.{name}", show_value=True)) for name, item in headers.items()
    )


_text = partial(require_str, empty_ok=True, show_value=True)
_flag = partial(require_bool, show_value=True)
_seconds = partial(require_duration, zero=True)
_count = _optional(partial(require_int, minimum=0, show_value=True))

_CONVERTERS: dict[str, Callable[[object, str], object]] = {
    "preset": _preset,
    "retry_after": _optional(_seconds),
    "status": _optional(partial(require_int, minimum=100, maximum=599, show_value=True)),
    "body": _body,
    "headers": _headers,
    "error_type": _optional(_text),
    "error_code": _optional(_text),
    "error_message": _optional(_text),
    "reset_before_headers": _flag,
    "never_answer": _flag,
    "headers_delay": _seconds,
    "first_content_delay": _seconds,
    "event_delay": _seconds,
    "cut_after_events": _count,
    "stall_after_events": _count,
    "malformed_at_event": _count,
    "omit_done": _flag,
    "stream_error_after_events": _count,
    "stream_error_code": _optional(_text),
    "stream_error_message": _optional(_text),
    "reject_prefill": _flag,
    "rate": require_ratio,
    "times": _count,
    "for_seconds": _optional(_seconds),
    "text": _text,
    "chunks": partial(require_int, minimum=1, show_value=True),
    "conversation": _conversation,
    "apis": _apis,
}
"""How each key of a fault mapping is read: ``preset``, ``retry_after`` and every init field of
:class:`Fault` (a test keeps them in step). Delays take the one duration grammar (``250ms``, ``2s``
or seconds)."""

_KEYS = frozenset(_CONVERTERS)


def behavior_keys() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the fault fields a behaviours file may set, the preset names), for help texts."""
    return tuple(f.name for f in dataclasses.fields(Fault) if f.init), Fault.PRESETS


def parse_behaviors(data: object, *, source: str = "behaviors") -> dict[str, Fault]:
    """``{"models": {"model-name": {fault fields}, ...}}`` -> ``{"model-name": Fault}``.

    The model name ``"*"`` is the behaviour of every model without its own entry.
    """
    if data is None:
        return {}
    try:
        top = require_mapping(data, source, what="a mapping with a 'models' key")
        check_keys(top, source, {"models"})
        models = require_mapping(
            top.get("models"), f"{source}.models", what="a mapping of model names to faults"
        )
        for name in models:
            require_str(name, f"{source}.models", show_value=True)
    except FaultConfigError:
        raise
    except ValidationError as exc:
        raise FaultConfigError(str(exc)) from None
    return {name: Fault.from_dict(spec, where=f"{source}.models.{name}") for name, spec in models.items()}


def load_behaviors(path: str | os.PathLike[str]) -> dict[str, Fault]:
    """Read a behaviours file (JSON when it ends in ``.json``, else YAML)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise FaultConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        data: object = orjson.loads(raw) if file.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        if isinstance(exc, yaml.MarkedYAMLError):  # name the file, not "<byte string>"
            for mark in (exc.context_mark, exc.problem_mark):
                if mark is not None:
                    mark.name = str(file)
        raise FaultConfigError(f"{file}: not valid {file.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    return parse_behaviors(data, source=str(file))
