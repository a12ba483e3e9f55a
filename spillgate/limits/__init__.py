"""Per-client-key limits: allowed models, requests and tokens per minute, concurrency, token budgets."""

from spillgate.limits.limiter import KeyLimiter, Refusal

__all__ = ["KeyLimiter", "Refusal"]
