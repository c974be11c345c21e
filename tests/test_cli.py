"""`flowrun` as a user runs it: a subprocess, its exit code, what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from flowrunner.testing import ChatServer, Reply

from conftest import FLOWS, ROOT, clean_env
from test_stream import CHUNK_DELAY, PACED_ANSWER, PACED_TOOLS, STREAMED, STREAMED_PLAIN, sse
from test_json import DEEP, SURROGATE, nested, raw_answer, tool_call


def flowrun(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    clean = clean_env()
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], input=stdin, text=True,
                          capture_output=True, cwd=ROOT, env=clean, timeout=60)


def test_weather_replays_its_cassette_with_no_key():
    done = flowrun("flows/weather.yaml")
    assert done.returncode == 0, done.stderr
    assert "replaying flows/cassettes/weather.yaml" in done.stderr
    assert "get_current_weather" in done.stderr  # the function call is shown as it happens
    assert "72" in done.stdout and "Boston" in done.stdout


def test_weather_json_record():
    done = flowrun("flows/weather.yaml", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "succeeded"
    first_round = record["steps"][0]["rounds"][0]
    assert first_round["finish_reason"] == "tool_calls"
    assert first_round["calls"][0]["name"] == "get_current_weather"
    assert first_round["calls"][0]["arguments"] == {"location": "Boston"}
    assert "72" in record["outputs"]["answer"]


def test_hello_json_shows_id_model_usage():
    done = flowrun("run", "flows/hello.yaml", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    (round_,) = record["steps"][0]["rounds"]
    assert round_["response_id"].startswith("chatcmpl-")
    assert round_["model"] == "gpt-4o-mini"
    assert round_["usage"]["total_tokens"] == record["usage"]["total_tokens"] > 0


def test_summarize_then_translate():
    done = flowrun("flows/summarize_translate.yaml")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.strip().splitlines())
    assert lines["summary"].startswith("The Chat Completions API")
    assert lines["translation"] == "[ko] " + lines["summary"]


def test_legacy_functions_flow():
    done = flowrun("flows/legacy_functions.yaml", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["steps"][0]["rounds"][0]["finish_reason"] == "function_call"
    assert "72" in record["outputs"]["answer"]


def test_chat_replays_a_conversation():
    session = (FLOWS / "chat.session.txt").read_text()
    done = flowrun("chat", "flows/chat.yaml", stdin=session)
    assert done.returncode == 0, done.stderr
    answers = done.stdout.strip().splitlines()
    assert len(answers) == 3
    assert "Boston" in answers[0] and "72" in answers[0]
    assert "Paris" in answers[1] and "Tokyo" in answers[1]
    assert answers[2].startswith("Hello")


def test_chat_goes_on_after_an_error():
    done = flowrun("chat", "flows/chat.yaml", stdin="Something never recorded\n/exit\n")
    assert done.returncode == 0
    assert "not in cassette" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.server
def test_live_run_against_a_server_matches_the_replay():
    with ChatServer() as server:
        live = flowrun("flows/weather.yaml", "--base-url", server.base_url)
    replay = flowrun("flows/weather.yaml")
    assert live.returncode == 0, live.stderr
    assert live.stdout == replay.stdout
    assert "replaying" not in live.stderr


@pytest.mark.server
def test_api_error_exits_1_with_a_hint():
    with ChatServer(api_key="the-right-key") as server:
        done = flowrun("flows/hello.yaml", "--base-url", server.base_url, OPENAI_API_KEY="a-wrong-key")
    assert done.returncode == 1
    assert "HTTP 401 invalid_api_key" in done.stderr and "OPENAI_API_KEY" in done.stderr
    assert "a-wrong-key" not in done.stderr  # OpenAI masks the key in its message; so does the test server
    assert "Traceback" not in done.stderr


def flowrun_timed(*args: str) -> tuple[int, list[tuple[float, bytes]], float, str]:
    """`flowrun` with stdout read as it comes: exit code, each read with its time, when stdout closed, stderr.
    Python's own buffering is left on (stdout into a pipe is block-buffered), so only flowrun's flushes show."""
    unset = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PYTHONUNBUFFERED")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    with subprocess.Popen([sys.executable, "-m", "flowrunner._cli", *args], cwd=ROOT, env=clean,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        reads = []
        while data := os.read(process.stdout.fileno(), 65536):
            reads.append((time.perf_counter(), data))
        closed = time.perf_counter()
        err = process.stderr.read().decode()
        return process.wait(timeout=60), reads, closed, err


@pytest.mark.server
def test_a_streamed_answer_reaches_stdout_as_the_server_sends_it(make_flow):
    flow = make_flow(STREAMED, tools=PACED_TOOLS)
    with ChatServer(chunk_delay=CHUNK_DELAY) as server:
        code, reads, closed, err = flowrun_timed("run", str(flow.path), "--base-url", server.base_url)
        assert code == 0, err
        assert b"".join(data for _, data in reads).decode() == PACED_ANSWER + "\n"  # shown once
        assert "get_current_weather" in err  # the streamed call, shown once it ran
        # The answer's first words were on stdout while the server still had 7 text pieces (and
        # finish, usage, [DONE]) to send, 50 ms apart: the terminal shows it as it is generated.
        first_at, first = reads[0]
        assert first and PACED_ANSWER.startswith(first.decode()) and len(first) < len(PACED_ANSWER) / 2
        assert first_at <= reads[-1][0] - 0.8 * 7 * CHUNK_DELAY
        assert first_at < closed - 0.8 * 10 * CHUNK_DELAY
        assert len(reads) >= 6
        # --json: nothing is streamed; stdout is the whole record, printed at the end.
        code, reads, closed, err = flowrun_timed("run", str(flow.path), "--base-url", server.base_url, "--json")
    assert code == 0, err
    record = json.loads(b"".join(data for _, data in reads))
    assert record["outputs"] == {"answer": PACED_ANSWER} and record["status"] == "succeeded"


def test_no_key_no_cassette_exits_2(tmp_path):
    flow = tmp_path / "lonely.yaml"
    flow.write_text((FLOWS / "hello.yaml").read_text())
    done = flowrun(str(flow))
    assert done.returncode == 2
    assert "nothing to talk to" in done.stderr and "OPENAI_API_KEY" in done.stderr


def test_validate_all_shipped_flows():
    done = flowrun("validate", *sorted(str(p.relative_to(ROOT)) for p in FLOWS.glob("*.yaml")))
    assert done.returncode == 0, done.stderr
    assert "flows/weather.yaml: ok (1 step, 2 functions)" in done.stdout


def test_invalid_flow_exits_2_with_location_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmodle: gpt-4o\nsteps:\n  - id: a\n    messages: [{role: user, content: hi}]\n")
    for command in (["validate", str(bad)], [str(bad)]):
        done = flowrun(*command)
        assert done.returncode == 2
        assert f"{bad}:2:1" in done.stderr and "model" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args, message", [
    (["flows/weather.yaml", "-i", "colour=red"], "has no input 'colour'"),
    (["flows/weather.yaml", "-i", "question"], "NAME=VALUE"),
    (["flows/missing.yaml"], "missing.yaml"),
    (["flows/weather.yaml", "--record-mode", "none", "--cassette", "nowhere.yaml"], "does not exist"),
    (["flows/hello.yaml", "--timeout", "-1"], "expected a positive number of seconds"),
    (["flows/hello.yaml", "--timeout", "soon"], "expected a positive number of seconds"),
    (["flows/hello.yaml", "--rate-limit", "rpm=0"], "argument --rate-limit: 'rpm=0': rpm must be at least 1"),
    (["flows/hello.yaml", "--rate-limit", "rpx=3"],
     "argument --rate-limit: 'rpx=3': expected rpm=N, rpd=N or tpm=N (comma-separated)"),
    (["flows/hello.yaml", "--rate-limit", "rpm=3,rpm=4"], "argument --rate-limit: rpm is given twice"),
    (["valdate", "flows/hello.yaml"], "'valdate' is neither a command nor a flow file; did you mean `flowrun validate`?"),
    (["tset"], "did you mean `flowrun test`?"),
    (["flows/hello.yaml", "--cassette", "new-cassette.yaml"],
     "recording needs a server: new-cassette.yaml would be recorded, but OPENAI_API_KEY is not set and there is "
     "no base URL\n  hint: export OPENAI_API_KEY=..., or --base-url"),
])
def test_usage_errors_exit_2(args, message):
    done = flowrun(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_numbers_too_long_to_read_exit_2_without_a_traceback(tmp_path):
    flow = tmp_path / "n.yaml"
    flow.write_text("model: m\ninputs:\n  n: {type: integer}\nsteps:\n  - id: a\n    max_rounds: 1"
                    + "0" * 4400 + "\n    messages: [{role: user, content: '{{ inputs.n }}'}]\n")
    done = flowrun("validate", str(flow))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{flow}:6:17: error: this value is a number of 4,401 digits" in done.stderr
    flow.write_text(flow.read_text().replace("1" + "0" * 4400, "2"))
    done = flowrun(str(flow), "-i", "n=" + "1" * 5000, "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: input 'n' expects integer, and '1111" in done.stderr and "5,000 digits" in done.stderr


def test_help_teaches():
    done = flowrun("--help")
    assert done.returncode == 0
    assert "flowrun flows/weather.yaml" in done.stdout
    run_help = flowrun("run", "--help").stdout
    assert "examples:" in run_help and "--record-mode" in run_help and "exit status" in run_help


@pytest.mark.parametrize("args", [["--help"], ["validate", "flows/weather.yaml"]])
def test_help_and_validate_do_not_import_openai_or_vcr(args):
    code = ("import sys\nfrom flowrunner._cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('openai', 'vcr', 'httpx', 'httpx2', 'sqlite3', 'flowrunner.history', "
            "'genai_prices') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, cwd=ROOT)
    assert "LOADED []" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("args", [["flows/hello.yaml", "--json"], ["flows/hello.yaml"], ["validate", "flows/hello.yaml"]])
@pytest.mark.parametrize("buffered", [True, False])
def test_output_into_a_closed_pipe_is_quiet(args, buffered):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before flowrun writes: like `flowrun ... | head -0`
    clean = clean_env()
    if buffered:  # as a user runs it: stdout into a pipe is block-buffered, written at the end
        clean.pop("PYTHONUNBUFFERED", None)
    try:
        done = subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], cwd=ROOT,
                              env=clean, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_json_stdout_holds_only_the_record_even_when_a_function_prints(tmp_path):
    (tmp_path / "noisy_tools.py").write_text(
        "def get_current_weather(location, unit='fahrenheit'):\n"
        "    print('debugging', location)\n"
        "    return {'location': location, 'temperature': '72'}\n"
        "def get_foo(location, foo):\n    return 'foo'\n")
    flow = (FLOWS / "weather.yaml").read_text().replace("weather_tools:", "noisy_tools:")
    (tmp_path / "weather.yaml").write_text(flow)
    with ChatServer() as server:
        done = flowrun(str(tmp_path / "weather.yaml"), "--json", "--base-url", server.base_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert "debugging Boston" in done.stderr


def test_the_shipped_batch_example_prints_the_whole_summary(tmp_path):
    import re

    out = tmp_path / "weather.results.jsonl"
    done = flowrun("batch", "flows/weather.yaml", "--inputs", "flows/data/weather.jsonl", "--out", str(out),
                   "--cassette", "flows/cassettes/weather.batch.yaml")
    assert done.returncode == 0, done.stderr
    first, figures, results = done.stdout.splitlines()
    assert first == "batch finished: 8 succeeded, 0 failed"
    assert re.fullmatch(r"  15 requests, 1,230 tokens \(1,115 prompt, 115 completion\), \$0\.\d{6}, \d+\.\d s, \d+\.\d runs/s",
                        figures), figures
    assert results == f"  results: {out}"
    # The summary's figures are the sums of what the results file says of each run.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in lines] == ["succeeded"] * 8
    assert [sum(r["usage"][k] for r in lines) for k in ("total_tokens", "prompt_tokens", "completion_tokens")] == \
        [1230, 1115, 115]
    assert "rerun the failures" not in done.stderr and "Traceback" not in done.stderr


def test_timeout_and_rate_limit_take_the_forms_a_user_would_write():
    from flowrunner._cli import build_parser

    args = build_parser().parse_args(["run", "flows/hello.yaml", "--timeout", "1m", "--rate-limit", "rpm=3 rpd=200"])
    assert args.timeout == 60.0 and str(args.rate_limit) == "rpm=3, rpd=200"
    assert build_parser().parse_args(["run", "x.yaml", "--timeout", "2.5"]).timeout == 2.5


def test_validate_searches_folders_as_test_does():
    done = flowrun("validate", "flows/")
    assert done.returncode == 0, done.stderr
    assert "flows/weather.yaml: ok" in done.stdout and "cassettes" not in done.stdout
    done = flowrun("validate", "no/such/folder")
    assert done.returncode == 2 and "no such file or folder: no/such/folder" in done.stderr


def test_validate_an_empty_folder_says_there_are_no_flows(tmp_path):
    (tmp_path / "notes.yaml").write_text("key: value\n")  # YAML, but no flow
    done = flowrun("validate", str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert f"error: no flows in {tmp_path}\n  hint: a flow is a .yaml or .yml file" in done.stderr


ANSWERS_FLOW = """\
name: states
model: gpt-4o
steps:
  - id: ask
    max_tokens: 50
    messages: [{role: user, content: "List all U.S. states."}]
"""


def answered(tmp_path, recording: str, *args: str) -> subprocess.CompletedProcess[str]:
    """flowrun on a one-step flow whose answer is the genuine recorded response `recording`."""
    from flowrunner.testing import Reply

    flow = tmp_path / "states.yaml"
    stream = "    stream: true\n" if "stream" in recording else ""
    flow.write_text(ANSWERS_FLOW.replace("    max_tokens: 50\n", "    max_tokens: 50\n" + stream))
    with ChatServer() as server:
        server.enqueue(Reply.from_recorded(ROOT / "tests" / "data" / "real-responses" / recording))
        return flowrun(str(flow), "--base-url", server.base_url, *args)


@pytest.mark.server
def test_a_cut_answer_is_printed_and_stderr_says_it_was_cut(tmp_path):
    done = answered(tmp_path, "11-length-cut.json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("8. Delaware\n9. Florida\n")
    assert ("warning in step 'ask': the answer was cut at the token limit (finish_reason: length, max_tokens: 50): "
            "it is incomplete\n  hint: raise max_tokens (50 now), or set on_length: fail") in done.stderr


@pytest.mark.server
@pytest.mark.parametrize("recording, error", [
    ("09-refusal.json", "error in step 'ask': the model refused: I'm very sorry, but I can't assist with that "
                        "request."),
    ("14-stream-reasoning-empty.json", "error in step 'ask': the answer is empty: the model spent all 50 completion "
                                       "tokens reasoning"),
])
def test_a_refused_or_empty_answer_exits_1_with_nothing_on_stdout(tmp_path, recording, error):
    done = answered(tmp_path, recording)
    assert done.returncode == 1
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.startswith(error), done.stderr


@pytest.mark.server
def test_chat_says_a_turn_was_cut_and_goes_on_after_a_refusal(tmp_path):
    from flowrunner.testing import Reply

    flow = tmp_path / "states.yaml"
    flow.write_text(ANSWERS_FLOW.replace('    messages: [{role: user, content: "List all U.S. states."}]\n',
                                         "    messages: [{role: system, content: Be brief.}]\n"))
    real = ROOT / "tests" / "data" / "real-responses"
    with ChatServer() as server:
        server.enqueue(Reply.from_recorded(real / "09-refusal.json"), Reply.from_recorded(real / "11-length-cut.json"))
        done = flowrun("chat", str(flow), "--base-url", server.base_url, stdin="How?\nList all U.S. states.\n")
    assert done.returncode == 0, done.stderr
    assert "error: the model refused: I'm very sorry" in done.stderr
    assert done.stdout.endswith("9. Florida\n")  # the second turn's answer, after the refused first
    assert "warning: the answer was cut at the token limit (finish_reason: length, max_tokens: 50)" in done.stderr


@pytest.mark.server
def test_a_streamed_spoken_answer_prints_its_transcript_once(tmp_path):
    from flowrunner.testing import Reply
    from test_answers import SPOKEN_STREAM, sse  # spec-built (the spec has no delta.audio), not recorded

    flow = tmp_path / "spoken.yaml"
    audio = "    extra_body: {modalities: [text, audio], audio: {voice: alloy, format: pcm16}}\n"
    flow.write_text(ANSWERS_FLOW.replace("    max_tokens: 50\n", "    stream: true\n" + audio))
    with ChatServer() as server:
        server.enqueue(Reply(body=sse(SPOKEN_STREAM)))
        done = flowrun(str(flow), "--base-url", server.base_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello there!\n"


# -- hostile answers: the run ends with an error, never a hang or a traceback ------------------------

def write_flow(tmp_path, text: str, name: str = "flow.yaml") -> str:
    import textwrap

    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.server
def test_a_stream_chunk_of_the_wrong_shape_ends_flowrun_with_an_error(tmp_path):
    flow = write_flow(tmp_path, STREAMED_PLAIN)
    with ChatServer() as server:
        server.enqueue(sse('{"choices": 5}'))
        done = flowrun("run", flow, "--base-url", server.base_url, "--timeout", "5")  # hangs: TimeoutExpired
    assert done.returncode == 1
    assert "a stream chunk is not shaped like a chat.completion.chunk" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.server
def test_a_streamed_answer_into_a_pipe_closed_midway_ends_quietly(tmp_path):
    flow = write_flow(tmp_path, STREAMED_PLAIN)
    question = "Tell me " + " ".join(f"word{n}" for n in range(60))  # echoed three words an event
    with ChatServer(chunk_delay=CHUNK_DELAY) as server:
        # `flowrun streamed.yaml | head -c 10`: the reader takes the first bytes and leaves.
        with subprocess.Popen([sys.executable, "-m", "flowrunner._cli", "run", flow, "-i", f"question={question}",
                               "--base-url", server.base_url], cwd=ROOT, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            assert process.stdout is not None and process.stderr is not None
            first = os.read(process.stdout.fileno(), 10)
            process.stdout.close()
            try:
                code = process.wait(timeout=60)
            finally:
                process.kill()
            err = process.stderr.read().decode()
    assert first.startswith(b"You said")
    assert code == 1
    assert "Traceback" not in err and "BrokenPipe" not in err


LOOKUP_FLOW = """
    model: m
    functions:
      lookup:
        entry: tools:lookup
        description: Look a word up
        parameters: {type: object, properties: {x: {}}}
    steps:
      - id: answer
        functions: [lookup]
        messages: [{role: user, content: "Say hi"}]
"""


@pytest.mark.server
def test_arguments_nested_940_deep_leave_json_output_whole(tmp_path):
    (tmp_path / "tools.py").write_text("def lookup(x=None):\n    return 'found'\n")
    flow = write_flow(tmp_path, LOOKUP_FLOW)
    arguments = '{"x": ' + nested(940) + "}"  # Python reads it, but writing it inside a record recursed too deep
    with ChatServer() as server:
        server.enqueue(tool_call(arguments))
        done = flowrun("run", flow, "--json", "--base-url", server.base_url)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    call = record["steps"][0]["rounds"][0]["calls"][0]
    assert call["raw_arguments"] == arguments and "nested deeper than 100 levels" in call["error"]


@pytest.mark.server
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_an_answer_nested_100000_deep_ends_flowrun_with_an_error(tmp_path, json_flag):
    flow = write_flow(tmp_path, STREAMED_PLAIN.replace("stream: true", "stream: false"))
    with ChatServer() as server:
        server.enqueue(Reply(body='{"choices": ' + DEEP + "}", content_type="application/json"))
        done = flowrun("run", flow, "--base-url", server.base_url, *json_flag)
    assert done.returncode == 1
    assert "the server's answer is not JSON (nested deeper than 100 levels" in (done.stdout + done.stderr)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value, reason", [(nested(10_000), "nested deeper than 100 levels"),
                                           ("1" * 5000, "a number of 5,000 digits")],
                         ids=["deep", "long-int"])
def test_an_input_value_json_cannot_hold_is_a_usage_error(tmp_path, value, reason):
    flow = write_flow(tmp_path, """
        model: m
        inputs:
          items: {type: array}
        steps:
          - id: answer
            messages: [{role: user, content: "{{ inputs.items }}"}]
    """)
    done = flowrun("run", flow, "-i", f"items={value}", "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "input 'items' expects array" in done.stderr and reason in done.stderr
    assert len(done.stderr) < 1000


# -- lone surrogates (broken UTF-16 from a model, undecodable bytes in argv): lossless JSON, readable text --

ECHO_FLOW = """
    model: m
    inputs:
      question: {type: string, default: "Say hi"}
    steps:
      - id: reply
        stream: %s
        messages: [{role: user, content: "{{ inputs.question }}"}]
"""


def flowrun_bytes(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """`flowrun` as a user runs it, stdout block-buffered, output as bytes."""
    env = clean_env()
    env.pop("PYTHONUNBUFFERED", None)
    env.pop("PYTHONIOENCODING", None)
    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], capture_output=True, cwd=ROOT, env=env,
                          timeout=60)


@pytest.mark.server
@pytest.mark.parametrize("stream", ["false", "true"])
def test_an_answer_with_a_lone_surrogate_is_printed_with_a_replacement_character(tmp_path, stream):
    flow = write_flow(tmp_path, ECHO_FLOW % stream)
    with ChatServer() as server:
        server.enqueue(raw_answer(f'"{SURROGATE}"') if stream == "false" else sse(
            '{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": '
            f'[{{"index": 0, "delta": {{"role": "assistant", "content": "{SURROGATE}"}}, "finish_reason": "stop"}}]}}'))
        done = flowrun_bytes("run", flow, "--base-url", server.base_url)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == "hel\ufffdlo\n".encode()  # once, even when streamed


@pytest.mark.server
def test_json_output_keeps_a_lone_surrogate_as_its_escape(tmp_path):
    flow = write_flow(tmp_path, ECHO_FLOW % "false")
    with ChatServer() as server:
        server.enqueue(raw_answer(f'"{SURROGATE}"'))
        done = flowrun_bytes("run", flow, "--json", "--base-url", server.base_url)
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode("utf-8")  # valid UTF-8
    assert "\\ud800" in text and json.loads(text)["outputs"] == {"reply": "hel\ud800lo"}


@pytest.mark.server
def test_an_input_with_undecodable_bytes_is_sent_readable_and_recorded_losslessly(tmp_path):
    flow = write_flow(tmp_path, ECHO_FLOW % "false")
    with ChatServer() as server:
        done = flowrun_bytes("run", flow, "--json", b"-i", b"question=caf\xe9 au lait", "--base-url", server.base_url)
        sent = server.requests[0].body["messages"][0]["content"] if server.requests else None
    assert done.returncode == 0, done.stderr.decode()
    assert sent == "caf\ufffd au lait"  # the server gets valid text; the record keeps what was typed
    record = json.loads(done.stdout.decode("utf-8"))
    assert record["inputs"] == {"question": "caf\udce9 au lait"}
    assert record["outputs"] == {"reply": "You said: caf\ufffd au lait"}


@pytest.mark.server
def test_a_function_result_with_a_lone_surrogate_reaches_the_model_and_the_record(tmp_path):
    (tmp_path / "tools.py").write_text("def lookup(x=None):\n    return {'found': 'hel\\ud800lo'}\n")
    flow = write_flow(tmp_path, LOOKUP_FLOW)
    with ChatServer() as server:
        server.enqueue(tool_call('{"x": 1}'))
        done = flowrun_bytes("run", flow, "--json", "--base-url", server.base_url)
        sent = server.requests[1].body["messages"][-1]["content"] if len(server.requests) > 1 else None
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(sent) == {"found": "hel\ud800lo"}  # JSON text: the escape travels as it is
    record = json.loads(done.stdout.decode("utf-8"))
    assert record["steps"][0]["rounds"][0]["calls"][0]["result"] == {"found": "hel\ud800lo"}


@pytest.mark.server
def test_flow_test_json_keeps_a_lone_surrogate_in_a_failure_as_its_escape(tmp_path):
    (tmp_path / "tools.py").write_text("def lookup(x=None):\n    return 'found'\n")
    flow = write_flow(tmp_path, LOOKUP_FLOW + """
    tests:
      - name: no_calls
        expect: {calls: []}
    """)
    with ChatServer() as server:
        server.enqueue(tool_call(f'{{"x": "{SURROGATE}"}}'))
        done = flowrun_bytes("test", flow, "--record", "--base-url", server.base_url, "--json")
    assert done.returncode == 1, done.stderr.decode()
    (case,) = json.loads(done.stdout.decode("utf-8"))["cases"]
    assert 'lookup({"x": "hel\ud800lo"})' in case["failures"][0]["message"]


@pytest.mark.server
def test_chat_prints_an_answer_with_a_lone_surrogate_readably_and_goes_on(tmp_path):
    flow = write_flow(tmp_path, ECHO_FLOW % "false")
    with ChatServer() as server:
        server.enqueue(raw_answer(f'"{SURROGATE}"'))
        env = clean_env()
        env.pop("PYTHONIOENCODING", None)
        done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "chat", flow, "--base-url", server.base_url],
                              input=b"first\nsecond\n", capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode("utf-8").splitlines() == ["hel\ufffdlo", "You said: first", "You said: second"]


@pytest.mark.server
def test_an_answer_a_terminal_cannot_encode_is_printed_with_its_replacement(tmp_path):
    flow = write_flow(tmp_path, ECHO_FLOW % "false")
    with ChatServer() as server:
        server.enqueue(raw_answer(f'"caf\\u00e9 {SURROGATE}"'))
        env = clean_env(PYTHONIOENCODING="ascii")
        done = subprocess.run([sys.executable, "-m", "flowrunner._cli", "run", flow, "--base-url", server.base_url],
                              capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"caf? hel?lo\n"


def test_help_command_shows_the_help_of_flowrun_or_of_a_command():
    assert flowrun("help").stdout == flowrun("--help").stdout != ""
    done = flowrun("help", "chat")
    assert done.returncode == 0 and done.stdout == flowrun("chat", "--help").stdout and "/save FILE" in done.stdout
    done = flowrun("help", "valdate")
    assert done.returncode == 2 and "did you mean `flowrun help validate`?" in done.stderr
    assert "flow file not found" not in done.stderr


@pytest.mark.server
def test_chat_commands_are_not_sent_and_save_writes_flow_ready_messages(tmp_path):
    import yaml

    from flowrunner._loader import load_flow_text

    saved = tmp_path / "talk.yaml"
    typed = ("/help\nWhat's the weather in Boston?\nPlease repeat {{ inputs.x }} and {% endraw %}\n"
             f"/save {saved}\n/reset\n/bogus\n//slash first\n")
    with ChatServer() as server:
        done = flowrun("chat", "flows/chat.yaml", "--base-url", server.base_url, stdin=typed)
        sent = [r.body["messages"] for r in server.requests]
    assert done.returncode == 0, done.stderr
    assert "/reset       start again from the step's own messages" in done.stderr  # /help
    assert "unknown command /bogus" in done.stderr and "reset: back to the 1 message(s) of step 'chat'" in done.stderr
    users = [m["content"] for messages in sent for m in messages if m["role"] == "user"]
    assert not any(text.startswith(("/help", "/save", "/reset", "/bogus")) for text in users)
    assert sent[-1][1:] == [{"role": "user", "content": "/slash first"}]  # after /reset: the system message only
    assert done.stdout.splitlines()[-1] == "You said: /slash first"
    # The saved file is a messages list a flow can use as it is: templates in the talk stay text.
    text = saved.read_text()
    assert text.startswith("# saved from `flowrun chat flows/chat.yaml`; 2 function call message(s) left out")
    messages = yaml.safe_load(text)["messages"]
    flow = load_flow_text(yaml.safe_dump({"model": "m", "steps": [{"id": "s", "messages": messages}]}))
    rendered = [(m.role, m.content.render({})) for m in flow.steps[0].messages]
    assert rendered == [("system", sent[0][0]["content"]),
                        ("user", "What's the weather in Boston?"),
                        ("assistant", sent[2][-2]["content"]),
                        ("user", "Please repeat {{ inputs.x }} and {% endraw %}"),
                        ("assistant", "You said: Please repeat {{ inputs.x }} and {% endraw %}")]
