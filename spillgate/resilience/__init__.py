"""Resilience: classify failures, keep health per scope, bound retries, decide what to try next."""
