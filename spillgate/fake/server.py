"""The fault-injecting fake LLM upstream: OpenAI Chat Completions, OpenAI Responses and
Anthropic Messages on one port, with per-model faults, an attempt log and a control API."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from spillgate.fake.answers import (
    JSON,
    MALFORMED_BODY,
    json_headers,
    plain_outcome,
    prefill_of,
    stream_answer,
    stream_headers,
    whole_answer,
)
from spillgate.fake.attempts import AttemptLog, AttemptRecord
from spillgate.fake.behavior import HEALTHY, Fault
from spillgate.fake.content import input_tokens_for, new_id
from spillgate.fake.control import CONTROL_PREFIX, handle_control
from spillgate.fake.protocol import (
    PROTOCOL_BY_PATH,
    ApiProtocol,
    error_json,
    not_served_json,
    protocol_for_path,
)
from spillgate.fake.script import StreamScript, script_stream
from spillgate.http.server import ClientDisconnected, Headers, HttpServer, Request, ResponseWriter

WILDCARD = "*"
"""The behaviour key that applies to every model without its own entry."""

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-5",
    "gpt-5-codex",
    "claude-sonnet-4-5",
    "claude-opus-4-1",
    "claude-haiku-4-5",
)


COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


def _error_responder(status: int, message: str, path: str) -> tuple[Headers, bytes]:
    return [JSON], error_json(protocol_for_path(path), status, message=message)


@dataclass(slots=True)
class _Slot:
    fault: Fault
    set_at: float
    count: int = 0


class FakeUpstream:
    """A fake LLM API server whose behaviour per model is a :class:`Fault`.

    ``behaviors`` maps model names (``"*"``: any other model) to faults. Stream-only faults on a
    request that does not stream: ``cut_after_events`` drops the connection before answering,
    ``stall_after_events`` never answers, ``stream_error_after_events`` answers with the error
    as an HTTP 500 (529 for Anthropic ``overloaded_error``), ``malformed_at_event`` sends a
    200 with a broken JSON body; ``first_content_delay`` waits before the body.

    A fault with a ``conversation`` answers with that scripted coding turn, in the request's API
    (see :mod:`spillgate.fake.conversation`), wherever it would send the plain answer, so the
    fault's status and stream faults still apply to it.

    A fault's ``apis`` are the APIs served for its model (on ``"*"``: for every model without its
    own entry, and for requests that name no model): a request on another API's path gets a 404
    in that path's error shape, logged with outcome ``not_served``, and does not count towards
    the fault's ``times`` or ``rate``.

    ``clock`` is what the time windows (``for_seconds``) and the attempt times are read from: a
    test can move it forward instead of waiting a window out (the delays stay real time).
    """

    def __init__(
        self,
        behaviors: Mapping[str, Fault] | None = None,
        *,
        max_attempts: int | None = 100_000,
        max_body_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._log = AttemptLog(max_attempts)
        # The kernel's own send buffer (autotuned), as a real upstream's: benchmarks compare
        # direct calls to the fake with calls through the gateway.
        self._server = HttpServer(
            self._handle, max_body_bytes=max_body_bytes, error_responder=_error_responder, send_buffer=0
        )
        self._started = False
        self._closing = False
        self._url_host = "127.0.0.1"
        self._waiting: set[asyncio.Task[object]] = set()
        self._in_flight = 0
        for model, fault in (behaviors or {}).items():
            self.set(model, fault)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        await self._server.start(host, port)
        self._started = True
        self._closing = False
        now = self._clock()
        for slot in self._slots.values():  # time windows count from when serving began
            slot.set_at = now
        if host in ("", "0.0.0.0"):
            self._url_host = "127.0.0.1"
        elif host == "::":
            self._url_host = "[::1]"
        elif ":" in host:
            self._url_host = f"[{host}]"
        else:
            self._url_host = host

    async def close(self, grace: float = 1.0) -> None:
        """Stop: requests held by a fault (never answering, stalled, delayed) are dropped at once;
        others get ``grace`` seconds to finish."""
        self._closing = True
        for task in list(self._waiting):
            task.cancel()
        if self._started:
            await self._server.close(grace)
            self._started = False

    async def __aenter__(self) -> FakeUpstream:
        if not self._started:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def in_flight(self) -> int:
        """LLM requests being handled right now (held ones included)."""
        return self._in_flight

    # -- behaviours ----------------------------------------------------------------------
    def set(self, model: str, fault: Fault) -> None:
        """Give ``model`` (``"*"``: every model without its own entry) this behaviour from now on;
        its request count and time window start again."""
        self._slots[model] = _Slot(fault, self._clock())

    def clear(self, model: str | None = None) -> None:
        """Make ``model`` (``None``: every model) healthy again."""
        if model is None:
            self._slots.clear()
        else:
            self._slots.pop(model, None)

    @property
    def behaviors(self) -> dict[str, Fault]:
        return {model: slot.fault for model, slot in self._slots.items()}

    # -- attempts ------------------------------------------------------------------------
    @property
    def attempts(self) -> list[AttemptRecord]:
        return self._log.all()

    def attempts_for(self, model: str) -> list[AttemptRecord]:
        return self._log.for_model(model)

    def reset_attempts(self) -> int:
        """Forget the attempt log; returns how many records there were."""
        return self._log.clear()

    # -- serving -------------------------------------------------------------------------
    async def _handle(self, request: Request, writer: ResponseWriter) -> None:
        protocol = PROTOCOL_BY_PATH.get(request.path)
        if protocol is None:
            await self._other(request, writer)
            return
        if request.method != "POST":
            server = self._fault_for("")  # no model to read: the server's setting
            if not server.serves(protocol):
                await writer.send(404, [JSON], self._not_served(request, protocol, server))
                return
            await writer.send(405, [JSON, ("allow", "POST")], error_json(protocol, 405))
            return
        self._in_flight += 1
        try:
            await self._answer(request, writer, protocol)
        finally:
            self._in_flight -= 1

    async def _answer(self, request: Request, writer: ResponseWriter, protocol: ApiProtocol) -> None:
        now = self._clock()
        request_id = new_id("req_")
        body = request.body
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        model = payload.get("model") if isinstance(payload, dict) else None
        stream = isinstance(payload, dict) and payload.get("stream") is True
        named = model if isinstance(model, str) else ""
        slot = (self._slots.get(named) if named else None) or self._slots.get(WILDCARD)
        fault = slot.fault if slot is not None else HEALTHY
        if not fault.serves(protocol):  # before anything else, as a server without the API
            self._record(request, now, protocol, named, stream, "not_served", False, request_id)
            not_found = self._not_served(request, protocol, fault)
            await writer.send(404, [JSON, ("x-request-id", request_id)], not_found)
            return
        if not named:
            self._record(request, now, protocol, "", False, "bad_request", False, request_id)
            message = (
                "The request body is not a JSON object."
                if not isinstance(payload, dict)
                else "you must provide a model parameter"
            )
            await writer.send(
                400, [JSON, ("x-request-id", request_id)], error_json(protocol, 400, message=message)
            )
            return
        assert isinstance(payload, dict)
        model = named
        applied = False
        if slot is not None:
            index = slot.count
            slot.count = index + 1
            applied = fault.active and fault.applies(index, now - slot.set_at)
        prefill = prefill_of(payload)
        if prefill is not None and fault.reject_prefill:
            self._record(request, now, protocol, model, stream, "status:400", True, request_id)
            message = "this model does not continue an assistant message (prefill is not supported)"
            await writer.send(
                400, [JSON, ("x-request-id", request_id)], error_json(protocol, 400, message=message)
            )
            return
        if prefill and fault.text.startswith(prefill) and len(fault.text) > len(prefill):
            # Like a model given an assistant prefill: it continues from there.
            fault = dataclasses.replace(fault, text=fault.text[len(prefill) :])
        input_tokens = input_tokens_for(body)
        created = int(time.time())

        if not applied:
            self._record(request, now, protocol, model, stream, "ok", False, request_id)
            if stream:
                events = stream_answer(protocol, model, fault, payload, input_tokens, created)
                writer.start(200, stream_headers(protocol, request_id))
                for frame in events.frames:
                    await writer.write(frame)
                await writer.end()
            else:
                answer = whole_answer(protocol, model, fault, payload, input_tokens, created)
                await writer.send(200, json_headers(protocol, request_id), answer)
            return

        script: StreamScript | None = None
        if fault.never_answer:
            outcome = "never_answer"
        elif fault.reset_before_headers:
            outcome = "reset"
        elif fault.status is not None:
            outcome = f"status:{fault.status}"
        elif stream:
            events = stream_answer(protocol, model, fault, payload, input_tokens, created)
            script = script_stream(events, fault)
            outcome = script.outcome
        else:
            outcome = plain_outcome(fault)
        self._record(request, now, protocol, model, stream, outcome, True, request_id)
        await self._faulted(
            writer, protocol, model, fault, script, request_id, payload, input_tokens, created
        )

    def _fault_for(self, model: str) -> Fault:
        """The behaviour of ``model`` (``""``: of a request that names none): its own, the
        wildcard's, or healthy."""
        slot = (self._slots.get(model) if model else None) or self._slots.get(WILDCARD)
        return slot.fault if slot is not None else HEALTHY

    @staticmethod
    def _not_served(request: Request, protocol: ApiProtocol, fault: Fault) -> bytes:
        return not_served_json(protocol, request.method, request.path, fault.apis)

    def _record(
        self,
        request: Request,
        now: float,
        protocol: ApiProtocol,
        model: str,
        stream: bool,
        outcome: str,
        applied: bool,
        request_id: str,
    ) -> None:
        self._log.append(
            AttemptRecord(
                time=now,
                path=request.path,
                protocol=protocol,
                model=model,
                stream=stream,
                headers=request.headers,
                body=request.body,
                outcome=outcome,
                fault_applied=applied,
                request_id=request_id,
            )
        )

    async def _faulted(
        self,
        writer: ResponseWriter,
        protocol: ApiProtocol,
        model: str,
        fault: Fault,
        script: StreamScript | None,
        request_id: str,
        payload: dict[str, object],
        input_tokens: int,
        created: int,
    ) -> None:
        if fault.never_answer:
            await self._pause(None)
            return
        if fault.headers_delay:
            await self._pause(fault.headers_delay)
        if fault.reset_before_headers:
            writer.abort(reset=True)
            return
        if fault.status is not None:
            headers = [("x-request-id", request_id), *fault.headers]
            if not any(name == "content-type" for name, _ in fault.headers):
                headers.append(JSON)
            await writer.send(fault.status, headers, fault.status_body(protocol))
            return
        if script is not None:
            await self._stream(writer, protocol, fault, script, request_id)
            return
        if fault.first_content_delay:
            await self._pause(fault.first_content_delay)
        headers = json_headers(protocol, request_id)
        headers.extend(fault.headers)
        if fault.cut_after_events is not None:
            writer.abort(reset=False)
        elif fault.stall_after_events is not None:
            await self._pause(None)
        elif fault.stream_error_after_events is not None:
            status, body = fault.stream_error_response(protocol)
            await writer.send(status, headers, body)
        elif fault.malformed_at_event is not None:
            await writer.send(200, headers, MALFORMED_BODY)
        else:
            answer = whole_answer(protocol, model, fault, payload, input_tokens, created)
            await writer.send(200, headers, answer)

    async def _stream(
        self,
        writer: ResponseWriter,
        protocol: ApiProtocol,
        fault: Fault,
        script: StreamScript,
        request_id: str,
    ) -> None:
        headers = stream_headers(protocol, request_id)
        headers.extend(fault.headers)
        writer.start(200, headers)
        first = script.first_content
        first_delay = fault.first_content_delay
        event_delay = fault.event_delay
        frames = script.frames
        for i, frame in enumerate(frames):
            if i == first and first_delay:
                await self._pause(first_delay)
            elif i and event_delay:
                await self._pause(event_delay)
            await writer.write(frame)
        if first == len(frames) and first_delay:
            await self._pause(first_delay)
        if script.ending == "cut":
            writer.abort(reset=False)
        elif script.ending == "stall":
            await self._pause(None)
        else:
            await writer.end()

    async def _pause(self, seconds: float | None) -> None:
        """Wait (``None``: until the client leaves); :meth:`close` cuts the wait short."""
        if self._closing:
            raise ClientDisconnected("fake upstream is closing")
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            if seconds is None:
                await asyncio.get_running_loop().create_future()
            else:
                await asyncio.sleep(seconds)
        finally:
            self._waiting.discard(task)

    async def _other(self, request: Request, writer: ResponseWriter) -> None:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            await handle_control(self, request, writer)
        elif path == COUNT_TOKENS_PATH and request.method == "POST":
            # Anthropic's token count: a figure of the fake's own (the body's length / 3) that a
            # test can tell from the gateway's estimate.
            await writer.send(200, [JSON], orjson.dumps({"input_tokens": len(request.body) // 3}))
        elif path == "/v1/models":
            if request.method != "GET":
                await writer.send(405, [JSON, ("allow", "GET")], error_json(protocol_for_path(path), 405))
            else:
                await writer.send(
                    200, [JSON], self._models_json(anthropic="anthropic-version" in request.headers)
                )
        else:
            body = error_json(
                protocol_for_path(path), 404, message=f"Unknown request URL: {request.method} {path}"
            )
            await writer.send(404, [JSON], body)

    def _models_json(self, *, anthropic: bool) -> bytes:
        names = [m for m in self._slots if m != WILDCARD]
        names.extend(m for m in DEFAULT_MODELS if m not in self._slots)
        if anthropic:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in names
            ]
            return orjson.dumps({"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]})
        return orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "spillgate-fake"} for m in names
                ],
            }
        )


async def serve(
    host: str, port: int, behaviors: Mapping[str, Fault] | None = None, *, max_attempts: int = 10_000
) -> None:
    """Run a fake upstream until cancelled, after printing one line with its base URLs.

    The attempt log keeps the newest ``max_attempts`` records: a long benchmark run would
    otherwise grow it (and the garbage collector's pauses) without bound.
    """
    fake = FakeUpstream(behaviors, max_attempts=max_attempts)
    await fake.start(host, port)
    try:
        print(
            f"spillgate fake upstream listening: OpenAI base URL {fake.openai_base_url}"
            f"  Anthropic base URL {fake.anthropic_base_url}"
            f"  ({len(fake.behaviors)} model behaviours)",
            flush=True,
        )
        await asyncio.get_running_loop().create_future()
    finally:
        await fake.close()
