"""Spillgate's benchmarks, run from the repository root as ``python -m bench.overhead``,
``python -m bench.resilience`` and ``python -m bench.soak`` (or the ``bench/overhead``,
``bench/resilience`` and ``bench/soak`` wrappers, which do that under ``.venv/bin/python``).

The benchmarks (their own scenarios, options and reports): ``overhead`` (what one hop through the
gateway costs), ``resilience`` (failover under load with routes at capacity), ``soak`` (abusive
clients against the default limits). What they share: ``harness`` (processes, ports, pinning,
readiness, cleanup, ``/proc`` figures), ``report`` (the overhead table against the direct
baseline, the observability comparison, the shared ``run_benchmark`` main), ``wrk`` (the wrk
driver), ``sse`` (the streaming first-token client, any client API), ``client`` (the asyncio
HTTP/1.1 client and closed-loop load of ``resilience``), ``translation`` (``overhead
--translation``: translated routes against native ones), ``resilience_figures`` and ``abusers``
(``resilience``'s figures and ``soak``'s abusive clients). ``cpu_per_request`` is the exception
to the rule below: it runs the gateway in-process. See bench/README.md.

Nothing here imports ``spillgate``: the gateway and the fake upstream run as children
(``python -m spillgate ...`` from the repository root), so a checkout measures its own code.
"""
