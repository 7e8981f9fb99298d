"""``python -m bench.soak``: a soak test of the gateway under a long mixed load with faults.

One real ``modelway serve`` child (one worker, the control plane on: a SQLite store in the scratch directory, or
PostgreSQL in a schema of its own with ``--db postgres``) in front of OpenAI simulators from
:mod:`modelway.testing` (in this process, on one event loop in a thread). An aiohttp client sends a mix of requests,
each with its own ``x-request-id`` (:data:`CASES`):

- 38% non-stream and 35% streams read to the end (``soak-ok``);
- 10% streams the client abandons after their first content event (``soak-slow``: a stream of ~40 events 20 ms
  apart, so the gateway is still streaming when the caller hangs up; recorded as 499);
- 2% requests the client cancels before any answer (recorded as 499): 1% non-stream while the upstream holds its
  answer back (``soak-slow-first``), 1% streams while the gateway waits on the stalled first deployment of a
  failover (``soak-fo-stall``);
- 10% failovers: ``soak-fo-*`` aliases over two deployments, the first (weight 1000, timeout 0.5 s) answering
  429, 500, a TCP reset before any byte, or a stall the gateway times out, the second (weight 0.001) answering;
  ``server.cooldown: 0`` so that the failing deployment is tried first every time (and retried once: ``max_retries``
  1, the default). Half of them stream;
- 5% errors for the client (``soak-err-*``, one deployment): 500 (non-stream and stream, both a 502 for the
  client), an error event after two stream events, a stream cut after two events (both: a 200 stream ending with
  an SSE ``error`` event).

A client-side timeout per request (:data:`HANG_TIMEOUT`, above the longest the gateway may legitimately take with
these settings) marks a request as hung. A thread samples the server every second: RSS (:func:`bench.procs.rss_bytes`),
open descriptors (``/proc/<pid>/fd``), and ``tasks`` / ``usage_pending`` from ``GET /health/readiness`` with the
master key.

Phases: start (idle sample) -> warm-up (the first 10% of the requests, at most 5,000) -> quiet (the idle baseline:
RSS, descriptors and tasks after warm-up) -> the rest of the requests -> quiet (the end sample) -> optionally wait for
the gateway's idle upstream keep-alive connections to close (aiohttp closes them after 15-30 s) -> SIGTERM (the
server must exit 0 after flushing) -> read the store: exactly one usage record per request, with the status its case
expects. :data:`TOLERANCES` are the pass marks; the verdict and every figure go to a markdown table and JSON.
"""

from __future__ import annotations

from .cases import CASES
from .cli import main
from .report import render_markdown
from .result import TOLERANCES, SoakOptions, SoakResult
from .run import run_soak

__all__ = ["CASES", "TOLERANCES", "SoakOptions", "SoakResult", "main", "render_markdown", "run_soak"]
