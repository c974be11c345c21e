"""`flowrun chat FLOW`: a conversation with one step of a flow, functions included."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .._exceptions import RunError
from ._common import EXIT_OK, add_run_options, connection, flow_and_inputs, redact
from ._approval import terminal_approver
from ._display import Display
from ._history import add_log_option, log_chat_turn
from ._trace import maybe_trace_turn

if TYPE_CHECKING:
    from .._record import StepRecord

TurnLog = Callable[["StepRecord", "RunError | None"], None]
"""Keeps a chat turn in the run history (the turn, and its error if it failed)."""


COMMANDS = """commands:
  /help        this list
  /reset       start again from the step's own messages
  /save FILE   write the conversation as a flow's messages (YAML), to paste under a step
  /exit        end (as Ctrl-D does)
a line starting with // is sent with one / less"""


def register(sub: Any) -> None:
    parser = sub.add_parser("chat", help="chat with a flow's first step, functions included",
                            description="A conversation: each line you type is added to the history, the "
                                        "model may call the flow's functions, and it goes on until EOF "
                                        "(Ctrl-D) or /exit.",
                            epilog="example:\n  flowrun chat flows/chat.yaml\n\n" + COMMANDS,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flow", metavar="FLOW", help="the flow's YAML file")
    parser.add_argument("--step", metavar="ID", help="the step whose messages and functions to use (default: first)")
    add_run_options(parser)
    add_log_option(parser, default=True)
    parser.set_defaults(handler=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    from .._engine import Engine

    flow, inputs = flow_and_inputs(args)
    interactive = sys.stdin.isatty()
    with connection(flow, args) as transport:
        display = Display(stream_to=sys.stdout)
        engine = Engine(transport, model=args.model, on_event=display, rate_limit=args.rate_limit,
                        approve=terminal_approver(), prices=dict(args.prices))
        session = engine.chat(flow, inputs, step_id=args.step)

        def log(turn: StepRecord, error: RunError | None) -> None:
            log_chat_turn(turn, inputs, args, flow, error=error)
            maybe_trace_turn(turn, flow, inputs, args, error)

        if interactive:
            print(f"chatting with {flow.name} (/help for commands, Ctrl-D or /exit to end)", file=sys.stderr)
        if session.awaiting_answer:
            _chat_turn(session, None, display, log)
        for line in _lines(interactive):
            text = line.strip()
            if text in ("/exit", "/quit"):
                break
            if text.startswith("/") and not text.startswith("//"):
                _command(text, session, display, args.flow, log)
            elif text:
                _chat_turn(session, text[1:] if text.startswith("//") else text, display, log)
    return EXIT_OK




def _command(text: str, session: Any, display: Display, flow_path: str, log: TurnLog) -> None:
    """A line starting with `/`: a command for chat itself, never sent to the model."""
    name, _, rest = text.partition(" ")
    if name == "/help":
        print(COMMANDS, file=sys.stderr)
    elif name == "/reset":
        session.reset()
        print(f"reset: back to the {len(session.history)} message(s) of step {session.step.id!r}", file=sys.stderr)
        if session.awaiting_answer:
            _chat_turn(session, None, display, log)
    elif name == "/save":
        _save(session.history, rest.strip(), flow_path)
    else:
        print(f"error: unknown command {name}; /help lists them (start a line with // to send it as it is)",
              file=sys.stderr)


def _save(history: list[dict[str, Any]], target: str, flow_path: str) -> None:
    from pathlib import Path

    from .._chatlog import messages_yaml

    if not target:
        print("error: /save needs a file name, e.g. /save conversation.yaml", file=sys.stderr)
        return
    path = Path(target).expanduser()
    try:
        path.write_text(messages_yaml(history, f"flowrun chat {flow_path}"), encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return
    print(f"saved the conversation to {path}", file=sys.stderr)


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


def _chat_turn(session: Any, text: str | None, display: Display, log: TurnLog) -> None:
    shown = len(display.shown)
    try:
        turn = session.send(text)
    except RunError as exc:
        display.finish()
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        log(session.turns[-1], exc)
        return
    display.finish()
    log(turn, None)
    if len(display.shown) == shown:  # not streamed: print the answer now
        print(redact(turn.content or ""), flush=True)
    for warning in turn.warnings:  # e.g. an answer cut at the token limit
        print(redact(f"warning: {warning}"), file=sys.stderr)
