"""Per-client-key limits: allowed models, requests and tokens per minute, concurrency, token and
spend budgets."""

from spillgate.limits.limiter import SPENT, KeyLimiter, Refusal

__all__ = ["SPENT", "KeyLimiter", "Refusal"]
