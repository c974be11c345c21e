"""What several commands share: exit codes, the run options, the connection rules, printing helpers."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .._exceptions import ConfigError, FlowValidationError
from ._trace import add_trace_option

if TYPE_CHECKING:
    from .._model import Flow

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_run_options(parser: argparse.ArgumentParser, *, inputs: bool = True) -> None:
    """Options for every command that talks to a server: inputs, model, server, cassette, timeout.

    With `inputs=False` (batch: inputs come from a file) `-i` is still parsed, to say so, but not listed."""
    from .._cassette import RECORD_MODES

    parser.add_argument("-i", "--input", dest="inputs", action="append", default=[], metavar="NAME=VALUE",
                        help="an input value (repeatable); non-string inputs are read as JSON; VALUE @FILE reads "
                             "a file, @- stdin (at most 10 MB), @@... is a value starting with @" if inputs
                        else argparse.SUPPRESS)
    parser.add_argument("-m", "--model", help="model for every step, overriding the flow")
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL") or None, metavar="URL",
                        help="an OpenAI-compatible server, e.g. http://localhost:8000/v1 "
                             "(default: $OPENAI_BASE_URL, else OpenAI)")
    parser.add_argument("--cassette", type=Path, metavar="PATH", help="cassette file to record or replay")
    parser.add_argument("--record-mode", choices=RECORD_MODES,
                        help="none: replay only; once: record if the cassette is new (default with "
                             "--cassette); new_episodes: replay and record what is missing; all: re-record")
    parser.add_argument("--timeout", type=seconds, default=600.0, metavar="SECONDS",
                        help="the longest the server may stay silent: connecting, or between two pieces of "
                             "the answer (default: 600)")
    parser.add_argument("--deadline", type=seconds, metavar="SECONDS",
                        help="the longest one request may take, from sending it to the last byte of its answer, "
                             "however the server trickles it; a request past it is retried like a timeout "
                             "(default: 10m for an answer, 30m for a stream, or --timeout if longer)")
    add_trace_option(parser)
    parser.add_argument("--rate-limit", type=rate_limit, metavar="LIMITS",
                        help="your account's limits, overriding the flow's rate_limit: e.g. rpm=3,rpd=200 "
                             "or tpm=10000 (requests are paced to stay under them)")
    add_price_option(parser)


def add_price_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--price", dest="prices", type=price, action="append", default=[], metavar="MODEL=PRICES",
                        help="a model's price in US dollars per million tokens, beating the flow's prices and "
                             "the price table: e.g. gpt-4o-mini=input:0.15,output:0.6,cached_input:0.075 "
                             "(repeatable)")


def price(text: str) -> Any:
    """argparse type: `MODEL=input:0.15,output:0.6` as (model, Price)."""
    from .._pricing import parse_price

    try:
        return parse_price(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def usage_line(usage: dict[str, int], cost: float | None) -> str:
    """`312 tokens (250 prompt, 62 completion), $0.000084`: what a run or batch used and cost."""
    tokens = (f"{usage.get('total_tokens', 0):,} tokens ({usage.get('prompt_tokens', 0):,} prompt, "
              f"{usage.get('completion_tokens', 0):,} completion)")
    return tokens if cost is None else f"{tokens}, {dollars(cost)}"


def dollars(amount: float) -> str:
    """US dollars: cents above a dollar, millionths below (a request costs fractions of a cent)."""
    if amount >= 1:
        return f"${amount:,.2f}"
    if 0 < amount < 0.0000005:
        return "<$0.000001"
    return f"${amount:.6f}"


def rate_limit(text: str) -> Any:
    """argparse type: `rpm=60,tpm=10000` as a RateLimit."""
    from .._ratelimit import parse_rate_limit

    try:
        return parse_rate_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds, or a duration as flows write it (`1m`, `250ms`)."""
    from .._durations import parse_duration

    try:
        number: float | str = float(text)
    except ValueError:
        number = text
    try:
        value = parse_duration(number)  # also refuses more than a week, which no timer holds
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds or a duration like 90s or 1m, at most a week; "
                                         f"got {text!r}")
    return value


def flow_and_inputs(args: argparse.Namespace) -> tuple[Flow, dict[str, Any]]:
    """The flow and its input values, both checked before anything connects anywhere."""
    from .._inputs import read_assignments, read_inputs_file, resolve_inputs
    from .._loader import load_flow

    flow = load_flow(args.flow)
    given = read_inputs_file(args.inputs_file) if getattr(args, "inputs_file", None) else {}
    return flow, resolve_inputs(flow, {**given, **read_assignments(args.inputs)}, from_text=True)


@contextlib.contextmanager
def connection(flow: Flow, args: argparse.Namespace) -> Iterator[Any]:
    """The transport, inside the cassette when one is used; the run command's epilog states the rules."""
    from .._cassette import check_recordable, use_cassette
    from .._transport import OpenAITransport

    key = os.environ.get("OPENAI_API_KEY") or None
    cassette, mode = args.cassette, args.record_mode
    if cassette is None and mode is None and not key and not args.base_url:
        if not flow.default_cassette.is_file():
            raise ConfigError(
                f"nothing to talk to: OPENAI_API_KEY is not set, no --base-url, and there is no cassette "
                f"at {flow.default_cassette} to replay\n"
                "  hint: export OPENAI_API_KEY=..., or --base-url http://localhost:8000/v1 for a local "
                "server (Ollama, vLLM, llama.cpp, or `python -m flowrunner.testing.server`)")
        cassette, mode = flow.default_cassette, "none"
        print(f"no OPENAI_API_KEY or base URL: replaying {cassette}", file=sys.stderr)
    else:
        check_recordable(Path(cassette) if cassette is not None else flow.default_cassette, mode or "once",
                         bool(key or args.base_url), "export OPENAI_API_KEY=..., or --base-url "
                         "http://localhost:8000/v1 for a local server (`python -m flowrunner.testing.server`)")
    with OpenAITransport(base_url=args.base_url, api_key=key, timeout=args.timeout,
                         deadline=args.deadline) as transport:
        if cassette is None and mode is None:
            yield transport
            return
        with use_cassette(cassette or flow.default_cassette, mode or "once"):
            yield transport


def print_problems(exc: FlowValidationError) -> None:
    for problem in exc.problems:
        print(redact(str(problem)), file=sys.stderr)


def show_call(event: Any) -> None:
    """An engine event handler: one stderr line per function call."""
    if event.kind != "call" or event.call is None:
        show_retry(event)
        return
    call = event.call
    args = json.dumps(call.arguments, ensure_ascii=False) if call.arguments is not None else call.raw_arguments
    result = call.result if isinstance(call.result, str) else json.dumps(call.result, ensure_ascii=False)
    outcome = f"error: {shorten(call.error)}" if call.error else shorten(result)
    print(f"  [{event.step}] {shorten(call.name, 80)}({shorten(args or '')}) -> {outcome}", file=sys.stderr)


def show_retry(event: Any) -> None:
    """An engine event handler: one stderr line per retried request (shown even with --quiet: it explains a wait)."""
    if event.kind != "retry" or event.attempt is None:
        return
    from .._durations import format_duration

    attempt = event.attempt
    print(redact(f"  [{event.step}] retrying in {format_duration(attempt.slept)} after {clip(attempt.message or '')}"),
          file=sys.stderr)


def redact(text: str) -> str:
    from .._secrets import redact as _redact

    return _redact(text)


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def shorten(text: str, limit: int = 200) -> str:
    """Redacted text for a log line, clipped to `limit` characters with its full size said: a model's
    arguments or a function's result can be megabytes (the run record keeps them whole)."""
    text = redact(text)  # before clipping, which could leave a secret's start unredacted
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
