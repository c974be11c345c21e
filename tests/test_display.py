"""What `flowrun` shows while a flow runs: streamed text once, a streamed call's live line, retries."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from flowrunner._cli._display import Display
from flowrunner._engine import Event
from flowrunner._record import AttemptRecord, CallRecord

from conftest import ROOT, clean_env


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_streamed_text_is_written_as_it_comes_and_remembered():
    out, err = io.StringIO(), io.StringIO()
    display = Display(stream_to=out, err=err)
    for piece in ("It is ", "72", "."):
        display(Event("delta", "answer", 1, text=piece))
    assert out.getvalue() == "It is 72."
    display.finish()
    assert out.getvalue() == "It is 72.\n" and display.shown == ["It is 72."]
    assert err.getvalue() == ""


def test_a_streamed_calls_arguments_show_on_one_redrawn_line_then_the_call(capsys):
    err = Terminal()
    display = Display(stream_to=io.StringIO(), err=err)
    display(Event("delta", "answer", 1, text='{"location": ', tool="get_current_weather"))
    display(Event("delta", "answer", 1, text='"Boston"}', tool="get_current_weather"))
    assert err.getvalue().split("\r\x1b[K")[-1] == '  [answer] get_current_weather({"location": "Boston"}'
    call = CallRecord(id="call_1", name="get_current_weather", arguments={"location": "Boston"}, result="72")
    display(Event("call", "answer", 1, call=call))
    assert err.getvalue().endswith("\r\x1b[K")  # the live line is cleared before the call's own line
    assert '[answer] get_current_weather({"location": "Boston"}) -> 72' in capsys.readouterr().err


def test_no_live_line_when_stderr_is_not_a_terminal():
    err = io.StringIO()
    display = Display(stream_to=None, err=err)
    display(Event("delta", "answer", 1, text="{}", tool="f"))
    display(Event("delta", "answer", 1, text="text nobody shows (--json)"))
    display.finish()
    assert err.getvalue() == "" and display.shown == []


def test_retries_are_shown_even_when_calls_are_not(capsys):
    display = Display(stream_to=io.StringIO(), calls=False)
    display(Event("call", "a", 1, call=CallRecord(id=None, name="f", arguments={})))
    display(Event("retry", "a", 1, attempt=AttemptRecord(status=503, message="HTTP 503: busy", slept=1.5)))
    assert capsys.readouterr().err == "  [a] retrying in 1.5s after HTTP 503: busy\n"


def test_a_secret_streamed_in_pieces_never_reaches_the_screen():
    from flowrunner._secrets import register

    register("sk-live-0123456789", "OPENAI_API_KEY")
    out, err = io.StringIO(), Terminal()
    display = Display(stream_to=out, err=err)
    for piece in ("Your key: sk-li", "ve-01234", "56789. Bye"):
        display(Event("delta", "answer", 1, text=piece))
    for piece in ('{"key": "sk-live-0', '123456789"}'):
        display(Event("delta", "answer", 1, text=piece, tool="lookup"))
    display.finish()
    assert out.getvalue() == "Your key: [redacted:OPENAI_API_KEY]. Bye\n"
    assert display.shown == ["Your key: [redacted:OPENAI_API_KEY]. Bye"]  # as the record has it: not printed twice
    assert "sk-live-0" not in err.getvalue() and "[redacted:OPENAI_API_KEY]" in err.getvalue()


ECHO_FLOW = """
    model: gpt-4o-mini
    functions:
      echo:
        entry: tools:echo
        parameters: {type: object, properties: {text: {type: string}}, required: [text]}
    steps:
      - id: answer
        messages: [{role: user, content: "Echo something long."}]
        functions: [echo]
"""


@pytest.mark.server
def test_a_huge_call_is_clipped_on_stderr_with_its_size_and_kept_whole_in_the_record(make_flow, chat_server):
    from test_faults import completion

    flow = make_flow(ECHO_FLOW, tools="def echo(text):\n    return text\n")
    big = "x" * 1_000_000
    chat_server.enqueue(completion(calls=[("echo", {"text": big})]), completion("Done."))
    done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "run", str(flow.path), "--json",
                           "--base-url", chat_server.base_url], cwd=ROOT, env=clean_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "[answer] echo(" in line]
    assert line == ('  [answer] echo({"text": "' + "x" * 190 + "... (1,000,012 characters)) -> "
                    + "x" * 200 + "... (1,000,000 characters)")
    call = json.loads(done.stdout)["steps"][0]["rounds"][0]["calls"][0]
    assert call["arguments"] == {"text": big} and call["result"] == big  # the record keeps everything


def test_a_secret_cut_by_the_clip_is_still_redacted(capsys):
    from flowrunner._cli._common import show_call
    from flowrunner._secrets import register

    secret = "sk-live-" + "0123456789" * 3
    register(secret, "OPENAI_API_KEY")
    arguments = {"text": "y" * 185 + secret}  # the clip falls inside the secret
    show_call(Event("call", "answer", 1, call=CallRecord(id="c", name="echo", arguments=arguments, result="ok")))
    err = capsys.readouterr().err
    assert "sk-live" not in err and "0123456789" not in err and "[reda..." in err
