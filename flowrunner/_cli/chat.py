"""`flowrun chat FLOW`: a conversation with one step of a flow, functions included."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Iterator

from .._exceptions import RunError
from ._common import EXIT_OK, add_run_options, connection, flow_and_inputs, redact
from ._display import Display


def register(sub: Any) -> None:
    parser = sub.add_parser("chat", help="chat with a flow's first step, functions included",
                            description="A conversation: each line you type is added to the history, the "
                                        "model may call the flow's functions, and it goes on until EOF "
                                        "(Ctrl-D) or /exit.",
                            epilog="example:\n  flowrun chat flows/chat.yaml",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flow", metavar="FLOW", help="the flow's YAML file")
    parser.add_argument("--step", metavar="ID", help="the step whose messages and functions to use (default: first)")
    add_run_options(parser)
    parser.set_defaults(handler=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    from .._engine import Engine

    flow, inputs = flow_and_inputs(args)
    interactive = sys.stdin.isatty()
    with connection(flow, args) as transport:
        display = Display(stream_to=sys.stdout)
        engine = Engine(transport, model=args.model, on_event=display, rate_limit=args.rate_limit)
        session = engine.chat(flow, inputs, step_id=args.step)
        if interactive:
            print(f"chatting with {flow.name} (Ctrl-D or /exit to end)", file=sys.stderr)
        if session.awaiting_answer:
            _chat_turn(session, None, display)
        for line in _lines(interactive):
            text = line.strip()
            if text in ("/exit", "/quit"):
                break
            if text:
                _chat_turn(session, text, display)
    return EXIT_OK


def _lines(interactive: bool) -> Iterator[str]:
    """What the user types: with line editing and history on a terminal, else plain lines from stdin."""
    if not interactive:
        yield from sys.stdin
        return
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (input() gains arrow keys and history)
    while True:
        try:
            yield input("> ")
        except EOFError:
            print(file=sys.stderr)
            return


def _chat_turn(session: Any, text: str | None, display: Display) -> None:
    shown = len(display.shown)
    try:
        turn = session.send(text)
    except RunError as exc:
        display.finish()
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return
    display.finish()
    if len(display.shown) == shown:  # not streamed: print the answer now
        print(redact(turn.content or ""), flush=True)
    for warning in turn.warnings:  # e.g. an answer cut at the token limit
        print(redact(f"warning: {warning}"), file=sys.stderr)
