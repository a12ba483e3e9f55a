"""The fake upstream's runtime control API, served under ``/_fake/`` on the same port.

* ``GET    /_fake/behaviors``            -> ``{"models": {name: fault fields}}``
* ``PUT    /_fake/behaviors/{model}``    body: a fault as JSON (``{"preset": "capacity"}`` too;
  ``{"conversation": true}`` or ``{"conversation": {"commands": [...], "answer": "..."}}`` answers
  with a scripted coding turn in the request's API; ``{"apis": ["chat"]}`` serves only Chat
  Completions for the model, ``PUT /_fake/behaviors/*`` with it: for the whole server)
* ``DELETE /_fake/behaviors/{model}``    make one model healthy; ``DELETE /_fake/behaviors``: all
* ``GET    /_fake/attempts[?model=M][&body=1]`` -> a JSON list of attempts (bodies only with ``body=1``)
* ``DELETE /_fake/attempts``             forget the attempt log
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, unquote

import orjson

from spillgate.fake.behavior import Fault, FaultConfigError
from spillgate.http.server import Request, ResponseWriter

if TYPE_CHECKING:
    from spillgate.fake.server import FakeUpstream

CONTROL_PREFIX: Final = "/_fake/"

_JSON = [("content-type", "application/json")]


async def _reply(writer: ResponseWriter, status: int, payload: object) -> None:
    await writer.send(status, _JSON, orjson.dumps(payload))


async def _problem(writer: ResponseWriter, status: int, message: str) -> None:
    await _reply(writer, status, {"error": {"message": message, "type": "fake_control_error"}})


async def handle_control(fake: FakeUpstream, request: Request, writer: ResponseWriter) -> None:
    route = request.path[len(CONTROL_PREFIX) :]
    method = request.method
    if route == "behaviors" or route.startswith("behaviors/"):
        model = unquote(route[len("behaviors/") :]) if "/" in route else ""
        await _behaviors(fake, method, model, request.body, writer)
    elif route == "attempts":
        if method == "GET":
            query = parse_qs(request.query)
            with_body = query.get("body", ["0"])[-1] not in ("0", "false", "")
            records = fake.attempts_for(query["model"][-1]) if "model" in query else fake.attempts
            await _reply(writer, 200, [r.to_json(include_body=with_body) for r in records])
        elif method == "DELETE":
            await _reply(writer, 200, {"cleared": fake.reset_attempts()})
        else:
            await _problem(writer, 405, f"{method} is not allowed on {request.path}")
    elif route == "health":
        await _reply(writer, 200, {"ok": True})
    else:
        await _problem(writer, 404, f"unknown control path {request.path}")


async def _behaviors(
    fake: FakeUpstream, method: str, model: str, body: bytes, writer: ResponseWriter
) -> None:
    if method == "GET":
        faults = fake.behaviors
        if model:
            if model not in faults:
                await _problem(writer, 404, f"no behaviour set for model {model!r}")
            else:
                await _reply(writer, 200, faults[model].to_dict())
        else:
            await _reply(writer, 200, {"models": {name: f.to_dict() for name, f in faults.items()}})
    elif method in ("PUT", "POST") and model:
        try:
            data: object = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            await _problem(writer, 400, f"the body is not valid JSON: {exc}")
            return
        try:
            fault = Fault.from_dict(data, where=model)
        except FaultConfigError as exc:
            await _problem(writer, 400, str(exc))
            return
        fake.set(model, fault)
        await _reply(writer, 200, {"model": model, "fault": fault.to_dict()})
    elif method == "DELETE":
        fake.clear(model or None)
        await _reply(writer, 200, {"cleared": model or "*all*"})
    else:
        await _problem(writer, 405, f"{method} is not allowed here (PUT needs a model name)")
