"""Command line: ``spillgate serve | check | migrate | keys | fake-upstream | doctor``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from spillgate import __version__
from spillgate.cli_keys import add_store_commands, run_store_command
from spillgate.config.listen import parse_listen
from spillgate.config.loader import ConfigError
from spillgate.textutil import plural


def _listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spillgate",
        description="LLM API gateway that keeps coding agents working through capacity errors",
    )
    parser.add_argument("--version", action="version", version=f"spillgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config", help="YAML config file (default: $SPILLGATE_CONFIG, else embedded defaults)"
    )
    serve.add_argument("--listen", type=_listen, help="HOST:PORT, overrides the config's listen")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="N processes on one port (SO_REUSEPORT), or auto (one per core); more than 1 needs "
        "`state: redis://…` in the config",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker's

    check = sub.add_parser("check", help="validate a config file and print what it declares")
    check.add_argument("--config", help="YAML config file (default: $SPILLGATE_CONFIG)")

    migrate = sub.add_parser("migrate", help="apply the usage store's schema migrations")
    migrate.add_argument("--dsn", help="sqlite:PATH or postgresql://... (default: the config's usage.dsn)")
    migrate.add_argument("--config", help="YAML config file (default: $SPILLGATE_CONFIG)")

    keys = sub.add_parser("keys", help="client API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    hash_cmd = keys_sub.add_parser("hash", help="print the config hash of a key (reads stdin without KEY)")
    hash_cmd.add_argument("key", nargs="?")
    keys_sub.add_parser("new", help="make a new random key and print it with its hash (for the config)")
    add_store_commands(keys_sub)

    fake = sub.add_parser(
        "fake-upstream",
        help="run the fault-injecting fake upstream (for demos and tests)",
        epilog=_behaviors_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fake.add_argument("--listen", type=_listen, default=("127.0.0.1", 9090))
    fake.add_argument("--behaviors", help="YAML/JSON file: {models: {NAME: {fault fields}}}")
    fake.add_argument("--max-attempts", type=int, default=10_000, help="attempt log size (newest kept)")

    from spillgate.doctor.command import add_parser as add_doctor_parser

    add_doctor_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check":
            return _check(args)
        if args.command == "keys":
            return _keys(args)
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "fake-upstream":
            return _fake(args)
        if args.command == "doctor":
            from spillgate.doctor.command import run as run_doctor

            return run_doctor(args)
    except ConfigError as exc:
        print(f"spillgate: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def _workers(text: str) -> int:
    from spillgate.workers import parse_workers

    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    from spillgate.app import serve_until_signalled

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers > 1:
        return _serve_workers(args)
    serve_until_signalled(args.config, args.listen, reuse_port=args.reuse_port)
    return 0


def _serve_workers(args: argparse.Namespace) -> int:
    import os

    from spillgate.config.loader import load_settings
    from spillgate.workers import REDIS_HINT, refusal, supervise

    path = args.config or os.environ.get("SPILLGATE_CONFIG")
    if not path:
        print(
            f"spillgate: --workers {args.workers} needs a config file with a shared state store; "
            + REDIS_HINT,
            file=sys.stderr,
        )
        return 2
    settings = load_settings(path)
    why = refusal(settings, args.workers)
    if why is not None:
        print(f"spillgate: {why}", file=sys.stderr)
        return 2
    host, port = args.listen or (settings.host, settings.port)
    forwarded = ["--config", path, "--log-level", args.log_level]
    return supervise(forwarded, args.workers, host, port)


def _check(args: argparse.Namespace) -> int:
    import os

    from spillgate.config.loader import load_settings

    path = args.config or os.environ.get("SPILLGATE_CONFIG")
    if not path:
        print("spillgate: check needs --config PATH or SPILLGATE_CONFIG", file=sys.stderr)
        return 2
    s = load_settings(path)
    print(f"{path}: OK")
    print(f"  listen {s.host}:{s.port}; {plural(len(s.client_keys), 'client key')}")
    if s.state.shared:
        print(f"  state: shared through Redis (namespace {s.state.namespace!r})")
    else:
        print("  state: in this process (memory): one worker, one instance")
    for p in s.providers.values():
        t = p.timeouts
        print(
            f"  provider {p.name}: {p.protocol} {p.base_url} (connect {t.connect:g}s, first_token "
            f"{t.first_token:g}s, stream_idle {t.stream_idle:g}s, total {t.total:g}s)"
        )
    for a in s.accounts.values():
        limit = f", max_concurrency {a.max_concurrency}" if a.max_concurrency else ""
        print(f"  account {a.id}: provider {a.provider}{limit}")
    for m in s.models.values():
        for r in m.routes:
            via = f"accounts {', '.join(r.accounts)}" if r.accounts else f"provider {r.provider}"
            print(f"  model {m.name} route {r.label}: {via} -> {r.model}")
    for old, new in s.deprecated.items():
        print(f"  model {old}: deprecated alias of {new}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import os

    from spillgate.config.loader import load_settings
    from spillgate.store import StoreError, migrate

    dsn = args.dsn
    if dsn is None:
        path = args.config or os.environ.get("SPILLGATE_CONFIG")
        dsn = load_settings(path).usage_dsn if path else None
    if not dsn:
        print("spillgate: migrate needs --dsn or a config with usage.dsn", file=sys.stderr)
        return 2
    try:
        applied = migrate(dsn)
    except (StoreError, ValueError) as exc:
        print(f"spillgate: migrate failed: {exc}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from spillgate.gateway.auth import hash_key, new_key

    if args.keys_command in ("create", "list", "revoke"):
        return run_store_command(args)

    if args.keys_command == "new":
        key = new_key()
        print(f"key:  {key}\nhash: {hash_key(key)}")
        return 0
    key = args.key if args.key is not None else sys.stdin.readline().strip()
    if not key:
        print("spillgate: keys hash needs a key (argument or one line on stdin)", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def _behaviors_help() -> str:
    """The behaviours file's format, from the code so it cannot drift from it."""
    import textwrap

    from spillgate.fake.behavior import behavior_keys

    fields, presets = behavior_keys()
    wrap = textwrap.TextWrapper(width=100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(
        [
            "behaviours file (--behaviors), YAML or JSON; model '*' applies to every other model:",
            "  models:",
            "    gpt-x: {preset: capacity, times: 2}",
            "    claude-y: {status: 429, headers: {retry-after: '3'}, rate: 0.5}",
            "presets (start from one, then override its fields):",
            wrap.fill(", ".join(presets)),
            "fault fields:",
            wrap.fill(", ".join(fields)),
            "retry_after (seconds) goes with preset rate_limited only.",
        ]
    )


def _fake(args: argparse.Namespace) -> int:
    from spillgate.app import run
    from spillgate.fake import FaultConfigError, load_behaviors, serve

    try:
        behaviors = load_behaviors(args.behaviors) if args.behaviors else {}
    except FaultConfigError as exc:
        print(f"spillgate: fake-upstream: {exc}", file=sys.stderr)
        return 2
    host, port = args.listen
    try:
        run(serve(host, port, behaviors, max_attempts=args.max_attempts))
    except OSError as exc:  # only start-up raises it: serving handles its own connection errors
        reason = exc.strerror or exc
        print(f"spillgate: fake-upstream: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
