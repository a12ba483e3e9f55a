"""What a config reload can change in place, and what only a restart applies."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from spillgate.config.schema import Settings


@dataclass(frozen=True, slots=True)
class ReloadResult:
    source: str
    models: tuple[str, ...]
    providers: tuple[str, ...]
    client_keys: int
    pools_kept: tuple[str, ...]
    """Providers whose upstream connection pools carried over (same URL and size)."""
    restart_needed: tuple[str, ...]
    """Settings that changed but only take effect after a restart (the old values stay in force)."""
    retiring_requests: int
    """Requests still running on the previous configuration (streams finish there)."""


def restart_only_changes(old: Settings, new: Settings) -> tuple[str, ...]:
    """Keys whose new value a reload cannot apply to a running process."""
    checks = (
        ("listen", (old.host, old.port) != (new.host, new.port)),
        ("usage.dsn", old.usage_dsn != new.usage_dsn),
        ("state", old.state != new.state),
        ("metrics", old.metrics != new.metrics),
        *(
            (f"limits.{f.name}", getattr(old.limits, f.name) != getattr(new.limits, f.name))
            for f in fields(old.limits)
        ),
        ("resilience.retry_budget.window", old.resilience.budget_window != new.resilience.budget_window),
    )
    return tuple(name for name, changed in checks if changed)


def keep_restart_only(old: Settings, new: Settings) -> Settings:
    """``new`` with the restart-only settings of ``old`` (what the process actually runs with)."""
    return replace(
        new,
        host=old.host,
        port=old.port,
        usage_dsn=old.usage_dsn,
        state=old.state,
        metrics=old.metrics,
        limits=old.limits,
        resilience=replace(new.resilience, budget_window=old.resilience.budget_window),
    )
