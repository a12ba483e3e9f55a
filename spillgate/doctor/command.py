"""``spillgate doctor``: the subcommand's arguments and its entry point.

Exit codes: 0 everything answered; 1 a problem was found (the diagnosis says which); 2 a usage or
config error.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spillgate.config.loader import ConfigError, load_settings
from spillgate.config.schema import Pricing, Secret
from spillgate.doctor.target import (
    DEFAULT_TIMEOUT,
    MAX_OUTPUT_TOKENS,
    MAX_PROBES,
    PROTOCOL_CHOICES,
    AliasTarget,
    ProtocolChoice,
    UrlTarget,
    alias_target,
    candidate_apis,
    root_url,
)
from spillgate.resilience.classify import Classifier

if TYPE_CHECKING:
    from spillgate.doctor.runner import DoctorReport

# The probing machinery (HTTP client, report) is imported in run(): registering the subcommand
# must not slow down every other command's start.

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2

_DESCRIPTION = f"""\
Send a few minimal requests and say what is wrong: auth, quota, rate limit, one model at
capacity, the whole provider overloaded, a proxy in between, the network. Works against
Spillgate and against any OpenAI- or Anthropic-compatible endpoint; with --alias it probes
every route of a configured model straight against its provider.

What it sends: at most {MAX_PROBES} requests in a run (GET /v1/models among them, which costs
nothing), each completion one short user message asking for at most {MAX_OUTPUT_TOKENS} output
tokens. It says what they cost, per probe and in total, from the usage each answer reported:
prices from the genai-prices data, or with --alias from the config's pricing: (its overrides;
pricing: off says nothing of costs); "cost unknown" where the model's price is not known or
the answer reported no usage."""

_EPILOG = """\
examples:
  spillgate doctor --base-url https://api.openai.com/v1 --api-key-env OPENAI_API_KEY --model gpt-5
  spillgate doctor --base-url http://127.0.0.1:8080 --api-key-env SPILLGATE_KEY --model coder
  spillgate doctor --alias coder --config spillgate.yaml
  spillgate doctor --alias demo        (the routes of a running `spillgate serve` demo)

exit codes: 0 everything answered, 1 a problem was found, 2 usage or config error"""


class UsageError(ValueError):
    """Arguments that do not make a run; the message says what to change."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``doctor`` on the CLI's subparsers."""
    doctor = sub.add_parser(
        "doctor",
        help="probe an endpoint (or an alias's routes) and say what is wrong",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    url = doctor.add_argument_group("an endpoint")
    url.add_argument("--base-url", help="the endpoint's base URL, with or without a trailing /v1")
    url.add_argument("--model", help="the model name the agent uses")
    url.add_argument("--api-key", help="the key to send (prefer --api-key-env: keys on a command line leak)")
    url.add_argument("--api-key-env", metavar="VAR", help="read the key from this environment variable")
    url.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="MODEL",
        help="another model to compare with (repeatable, 2 at most; default: picked from GET /v1/models)",
    )
    alias = doctor.add_argument_group("a configured alias")
    alias.add_argument("--alias", help="probe every route/account of this model alias against its provider")
    alias.add_argument(
        "--config",
        help="the gateway's config file (default: $SPILLGATE_CONFIG, else a running demo's routes)",
    )
    doctor.add_argument(
        "--protocol",
        choices=PROTOCOL_CHOICES,
        default="auto",
        help="the API to probe with (auto: Anthropic for claude* models or anthropic hosts, Responses "
        "for *codex* models, else Chat Completions; a 404 on the path tries another once)",
    )
    doctor.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per probe (default {DEFAULT_TIMEOUT:g})",
    )
    doctor.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    doctor.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return doctor


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Run ``spillgate doctor`` with parsed arguments; returns the exit code."""
    from spillgate.doctor.cost import price_book
    from spillgate.doctor.report import StderrProgress, render_json, render_text
    from spillgate.doctor.runner import run_doctor

    environ = os.environ if env is None else env
    try:
        setup = build_target(args, environ)
    except (UsageError, ConfigError) as exc:
        kind = "config error" if isinstance(exc, ConfigError) else "doctor"
        print(f"spillgate: {kind}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    progress = None if args.quiet else StderrProgress(sys.stderr)
    report = _run_loop(
        run_doctor(
            setup.target,
            timeout=args.timeout,
            classifier=setup.classifier,
            progress=progress,
            prices=price_book(setup.pricing),
        )
    )
    if progress is not None:
        sys.stderr.write("\n")
    sys.stdout.write(render_json(report) if args.json else render_text(report))
    sys.stdout.flush()
    return report.exit_code


@dataclass(frozen=True, slots=True)
class Setup:
    """What a run needs besides its options: what to probe, how to read failures, what tokens cost."""

    target: UrlTarget | AliasTarget
    classifier: Classifier
    """An alias's config brings its operator rules (``error_rules``)."""
    pricing: Pricing
    """An alias's config's ``pricing:``; for a base URL the defaults (``genai-prices`` data)."""


def build_target(args: argparse.Namespace, env: Mapping[str, str]) -> Setup:
    """The target, the classifier and the pricing from the arguments."""
    protocol: ProtocolChoice = args.protocol
    if args.alias is not None:
        for flag, value in (
            ("--base-url", args.base_url),
            ("--model", args.model),
            ("--api-key", args.api_key),
        ):
            if value is not None:
                raise UsageError(f"{flag} does not go with --alias (the config names the routes and keys)")
        path = args.config or env.get("SPILLGATE_CONFIG")
        if path:
            settings = load_settings(path, env=env)
        else:
            from spillgate.doctor.demo import running_demo

            demo = running_demo(env)
            if demo is None:
                raise UsageError(
                    "--alias needs --config PATH or SPILLGATE_CONFIG (or a running demo: `spillgate "
                    "serve` with neither a config nor OPENAI_API_KEY / ANTHROPIC_API_KEY)"
                )
            settings = demo
        try:
            target = alias_target(settings, args.alias, protocol)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            classifier = Classifier(settings.error_rules)
        except ValueError as exc:
            raise ConfigError(f"error_rules: {exc}") from None
        return Setup(target, classifier, settings.pricing)
    if args.base_url is None:
        raise UsageError(
            "say what to examine: --base-url URL --model MODEL [--api-key-env VAR], or --alias NAME"
        )
    if not args.model:
        raise UsageError("--base-url needs --model (the model name the agent uses)")
    try:
        root = root_url(args.base_url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    url = UrlTarget(
        root=root,
        model=args.model,
        apis=candidate_apis(protocol, args.model, root),
        key=_key(args, env),
        compare=tuple(args.compare),
    )
    return Setup(url, Classifier(), Pricing())


def _run_loop(coro: Coroutine[Any, Any, DoctorReport]) -> DoctorReport:
    """On uvloop where it is installed, as the gateway runs (its OS errors read better, too:
    "Connection refused" rather than asyncio's "Connect call failed")."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    report: DoctorReport = uvloop.run(coro)
    return report


def _key(args: argparse.Namespace, env: Mapping[str, str]) -> Secret | None:
    if args.api_key is not None and args.api_key_env is not None:
        raise UsageError("give --api-key or --api-key-env, not both")
    if args.api_key_env is not None:
        value = env.get(args.api_key_env)
        if not value:
            raise UsageError(f"--api-key-env: environment variable {args.api_key_env} is not set")
        return Secret(value)
    return Secret(args.api_key) if args.api_key else None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value
