"""``spillgate keys create | list | revoke``: client keys kept (hashed) in the usage store."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from typing import TYPE_CHECKING

from spillgate.config.schema import KeyLimits
from spillgate.limits.limiter import usd_text

if TYPE_CHECKING:
    from spillgate.store.keys import KeyRegistry, StoredKey


def add_store_commands(keys_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def where(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dsn", help="usage store: sqlite:PATH or postgresql://... (default: the config's)")
        p.add_argument("--config", help="YAML config file (default: $SPILLGATE_CONFIG, else the defaults')")
        p.add_argument(
            "--state",
            help="shared state store to tell the running gateways at once: redis://... (default: the "
            "config's `state`; without one they re-read keys every limits.key_refresh)",
        )

    create = keys_sub.add_parser(
        "create", help="make a client key with optional limits; stored hashed, the key is shown once"
    )
    create.add_argument("name", help="a name for the key (shown in usage, metrics and errors)")
    create.add_argument("--models", help="comma-separated model names the key may call (default: any)")
    create.add_argument("--rpm", type=_positive, help="requests per minute")
    create.add_argument("--tpm", type=_positive, help="tokens (input + output) per minute")
    create.add_argument("--max-concurrent", type=_positive, help="requests in flight at once")
    create.add_argument("--token-budget", type=_positive, help="tokens (input + output) per budget period")
    create.add_argument(
        "--spend-budget", type=_positive_usd, help="USD per budget period (what the requests cost)"
    )
    create.add_argument(
        "--budget-period",
        choices=["day", "month", "total"],
        default="month",
        help="the period of --token-budget and --spend-budget (UTC; total: never resets)",
    )
    where(create)
    listing = keys_sub.add_parser("list", help="the stored client keys (names, prefixes, limits, status)")
    where(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke a stored client key (the gateway stops accepting it)")
    revoke.add_argument("name")
    where(revoke)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_usd(text: str) -> float:
    try:
        value = float(text.strip().removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive amount in USD, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive amount in USD, got {text!r}")
    return value


async def _announce(args: argparse.Namespace) -> bool:
    """Tell the gateways sharing the state store that the stored keys changed (whether it was)."""
    from spillgate.config.loader import load_settings
    from spillgate.config.schema import SharedState
    from spillgate.fleet.store import announce_keys_changed

    state: SharedState | None = None
    if getattr(args, "state", None):
        state = SharedState(url=args.state)
    else:
        path = args.config or os.environ.get("SPILLGATE_CONFIG")
        if path:
            state = load_settings(path).state
    if state is None or not state.shared:
        return False
    if await announce_keys_changed(state):
        return True
    print(
        "spillgate: the shared state store did not answer: gateways see the change at their next refresh",
        file=sys.stderr,
    )
    return False


def store_dsn(args: argparse.Namespace) -> str | None:
    from spillgate.config.loader import DEFAULT_USAGE_DSN, load_settings

    if args.dsn:
        return str(args.dsn)
    path = args.config or os.environ.get("SPILLGATE_CONFIG")
    if path:
        return load_settings(path).usage_dsn
    return DEFAULT_USAGE_DSN


def run_store_command(args: argparse.Namespace) -> int:
    from spillgate.store import StoreError

    dsn = store_dsn(args)
    if not dsn:
        print("spillgate: the config says `usage: off`; stored keys need a usage store", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, dsn))
    except (StoreError, ValueError) as exc:
        print(f"spillgate: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, dsn: str) -> int:
    from spillgate.store import open_store
    from spillgate.store.keys import KeyRegistry

    store = await asyncio.to_thread(open_store, dsn)
    try:
        registry = KeyRegistry(store)
        if args.keys_command == "create":
            return await _create(registry, args)
        if args.keys_command == "list":
            return _list(await registry.all())
        if await registry.revoke(args.name):
            if await _announce(args):
                print(f"revoked {args.name!r}: the running gateways were told; they refuse it now")
            else:
                print(f"revoked {args.name!r}: a running gateway refuses it after its next key refresh (5 s)")
            return 0
        print(f"spillgate: no active client key named {args.name!r}", file=sys.stderr)
        return 1
    finally:
        await store.close()


async def _create(registry: KeyRegistry, args: argparse.Namespace) -> int:
    from spillgate.gateway.auth import new_key

    models = None
    if args.models is not None:
        models = frozenset(m.strip() for m in args.models.split(",") if m.strip())
        if not models:
            print("spillgate: --models needs at least one model name", file=sys.stderr)
            return 2
    limits = KeyLimits(
        models=models,
        rpm=args.rpm,
        tpm=args.tpm,
        max_concurrent=args.max_concurrent,
        token_budget=args.token_budget,
        spend_budget=args.spend_budget,
        budget_period=args.budget_period,
    )
    key = new_key()
    stored = await registry.create(args.name, key, limits)
    await _announce(args)
    print(f"key:    {key}")
    print(f"name:   {stored.name}")
    print(f"limits: {describe_limits(stored.limits)}")
    print(
        "This key is shown once: only its SHA-256 is stored. Once any client key exists, the gateway "
        "refuses requests without one.",
        file=sys.stderr,
    )
    return 0


def _list(keys: list[StoredKey]) -> int:
    if not keys:
        print("no stored client keys (make one with `spillgate keys create NAME`)")
        return 0
    rows = [("NAME", "KEY", "CREATED", "STATUS", "LIMITS")]
    for k in keys:
        status = "active" if k.active else "revoked " + _when(k.revoked_at or 0)
        rows.append((k.name, k.prefix + "…", _when(k.created_at), status, describe_limits(k.limits)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    return 0


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def describe_limits(limits: KeyLimits) -> str:
    parts = []
    if limits.models is not None:
        parts.append("models " + ",".join(sorted(limits.models)))
    if limits.rpm:
        parts.append(f"{limits.rpm} req/min")
    if limits.tpm:
        parts.append(f"{limits.tpm} tokens/min")
    if limits.max_concurrent:
        parts.append(f"{limits.max_concurrent} concurrent")
    per = "in total" if limits.budget_period == "total" else f"per {limits.budget_period}"
    if limits.token_budget:
        parts.append(f"{limits.token_budget} tokens {per}")
    if limits.spend_budget:
        parts.append(f"{usd_text(limits.spend_budget)} {per}")
    return ", ".join(parts) or "none"
