"""modelway's benchmark harness: ``python -m bench`` (see BENCHMARKS.md and ``python -m bench --help``).

It starts a fast fake OpenAI-compatible upstream (:mod:`bench.upstream`) and measures, side by side in one run, a
direct call to it, nginx ``proxy_pass``, a minimal Python pass-through proxy (:mod:`bench.minimal_proxy`),
``modelway serve`` and, opt-in, LiteLLM's proxy, with wrk for throughput and a raw-socket client for time to first
byte. Nothing here is imported by modelway itself.
"""
