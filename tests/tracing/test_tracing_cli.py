"""Traces end to end: `flowrun` (a subprocess) runs flows against the test server and sends its traces
over OTLP/HTTP to a receiver on 127.0.0.1, which decodes them with opentelemetry-proto."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from flowrunner.testing import ChatServer, faults
from otlp_receiver import OTLPReceiver  # this folder is on sys.path (pytest's rootdir-less import mode)

ROOT = Path(__file__).resolve().parents[2]
INTERNAL, CLIENT = 1, 3  # OTLP's SpanKind numbers
UNSET, OK, ERROR = 0, 1, 2  # OTLP's status codes

pytestmark = pytest.mark.server


@pytest.fixture
def otlp() -> Iterator[OTLPReceiver]:
    """An OTLP/HTTP receiver on 127.0.0.1 (no conftest.py here: tests import `conftest` by that name)."""
    with OTLPReceiver() as receiver:
        yield receiver


def flowrun(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
            prelude: str = "") -> subprocess.CompletedProcess[str]:
    """`flowrun ARGS` in a fresh interpreter, with no key, no base URL and no OTEL_* variable but `env`'s."""
    import os

    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL") and not k.startswith("OTEL_")}
    code = f"import sys\n{prelude}\nfrom flowrunner._cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env={**clean, **(env or {})},
                          input=stdin, capture_output=True, text=True, timeout=60)


def by_name(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        found.setdefault(span["name"], []).append(span)
    return found


def write_flow(folder: Path, text: str, tools: str | None = None) -> Path:
    if tools is not None:
        (folder / "trace_tools.py").write_text(textwrap.dedent(tools))
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_run_is_one_trace_shaped_and_named_as_the_genai_conventions_say(otlp):
    with ChatServer() as server:
        done = flowrun("flows/weather.yaml", "--base-url", server.base_url, "--json",
                       env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert otlp.paths == ["/v1/traces"] and otlp.content_types == ["application/x-protobuf"]
    spans = otlp.spans
    names = by_name(spans)
    assert sorted(names) == ["chat gpt-4o-mini", "execute_tool get_current_weather", "invoke_agent answer",
                             "invoke_workflow weather"]
    assert len({s["trace_id"] for s in spans}) == 1
    (root,) = names["invoke_workflow weather"]
    (agent,) = names["invoke_agent answer"]
    chats = names["chat gpt-4o-mini"]
    (tool,) = names["execute_tool get_current_weather"]
    # The tree: workflow > agent (the step) > its requests and, after the request that asked, its function calls.
    assert root["parent_span_id"] == "" and agent["parent_span_id"] == root["span_id"]
    assert [c["parent_span_id"] for c in chats] == [agent["span_id"]] * 2
    assert tool["parent_span_id"] == agent["span_id"]
    assert (root["kind"], agent["kind"], tool["kind"]) == (INTERNAL, INTERNAL, INTERNAL)
    assert [c["kind"] for c in chats] == [CLIENT, CLIENT]
    assert root["attributes"]["gen_ai.operation.name"] == "invoke_workflow"
    assert root["attributes"]["gen_ai.workflow.name"] == "weather"
    assert agent["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert agent["attributes"]["gen_ai.agent.name"] == "answer"
    # Each request as the record has it.
    rounds = record["steps"][0]["rounds"]
    port = int(server.base_url.split(":")[2].split("/")[0])
    for chat, round_ in zip(chats, rounds):
        attributes = chat["attributes"]
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)
        assert attributes["gen_ai.response.id"] == round_["response_id"]
        assert attributes["gen_ai.response.model"] == round_["model"]
        assert attributes["gen_ai.response.finish_reasons"] == [round_["finish_reason"]]
        assert attributes["gen_ai.usage.input_tokens"] == round_["usage"]["prompt_tokens"]
        assert attributes["gen_ai.usage.output_tokens"] == round_["usage"]["completion_tokens"]
        assert chat["status"] == UNSET and "error.type" not in attributes
    assert [c["attributes"]["gen_ai.response.finish_reasons"] for c in chats] == [["tool_calls"], ["stop"]]
    assert tool["attributes"]["gen_ai.tool.name"] == "get_current_weather"
    assert tool["attributes"]["gen_ai.tool.call.id"] == rounds[0]["calls"][0]["id"]
    assert tool["attributes"]["gen_ai.tool.type"] == "function"
    assert tool["attributes"]["gen_ai.tool.description"] == "Get the current weather in a given location"
    assert agent["attributes"]["gen_ai.usage.input_tokens"] == record["usage"]["prompt_tokens"]
    # Content only when asked for.
    every_key = {key for span in spans for key in span["attributes"]}
    assert not every_key & {"gen_ai.output.messages", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
                            "flowrunner.run.inputs", "flowrunner.run.outputs"}
    assert root["resource"]["service.name"] == "flowrunner" and root["scope"] == "flowrunner"
    # The times are the record's: when each part began, how long it took.
    ns = 1_000_000_000
    assert root["start"] == int(record["started"] * ns)
    assert root["end"] - root["start"] == pytest.approx(record["duration"] * ns, abs=1000)
    for chat, round_ in zip(chats, rounds):
        assert chat["start"] == int(round_["started"] * ns)
        assert chat["end"] == int((round_["sent"] + round_["latency"]) * ns)
    call = rounds[0]["calls"][0]
    assert (tool["start"], tool["end"]) == (int(call["started"] * ns), int((call["started"] + call["duration"]) * ns))
    assert chats[0]["end"] <= tool["start"] <= tool["end"] <= chats[1]["start"]
    # Children lie within their parent's time (a parent covers its children).
    for span in spans:
        parent = next((p for p in spans if p["span_id"] == span["parent_span_id"]), None)
        assert span["start"] <= span["end"]
        if parent is not None:
            assert parent["start"] <= span["start"] and span["end"] <= parent["end"]


def test_content_is_captured_when_asked_for_and_redacted(otlp):
    key = "sk-trace-secret-0123456789"
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.endpoint + "/v1/traces",
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true", "OPENAI_API_KEY": key}
    with ChatServer() as server:
        done = flowrun("flows/weather.yaml", "--base-url", server.base_url,
                       "-i", f"question=What's the weather in Boston {key}?", env=env)
    assert done.returncode == 0, done.stderr
    names = by_name(otlp.spans)
    (tool,) = names["execute_tool get_current_weather"]
    arguments = json.loads(tool["attributes"]["gen_ai.tool.call.arguments"])
    assert arguments == {"location": "Boston [redacted:OPENAI_API_KEY]"}
    assert json.loads(tool["attributes"]["gen_ai.tool.call.result"])["temperature"] == "72"
    first, last = names["chat gpt-4o-mini"]
    (asked,) = json.loads(first["attributes"]["gen_ai.output.messages"])
    assert asked["role"] == "assistant" and asked["finish_reason"] == "tool_calls"
    assert asked["parts"] == [{"type": "tool_call", "id": tool["attributes"]["gen_ai.tool.call.id"],
                               "name": "get_current_weather", "arguments": arguments}]
    (answer,) = json.loads(last["attributes"]["gen_ai.output.messages"])
    assert answer["parts"][0]["type"] == "text" and "temperature 72" in answer["parts"][0]["content"]
    # What was sent: the first request the flow's messages, the second also the call and its result.
    sent_first = json.loads(first["attributes"]["gen_ai.input.messages"])
    assert [m["role"] for m in sent_first] == ["user"]
    assert sent_first[0]["parts"] == [{"type": "text",
                                       "content": "What's the weather in Boston [redacted:OPENAI_API_KEY]?"}]
    assert json.loads(first["attributes"]["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "You are a helpful assistant."}]  # the flow's system message
    sent_last = json.loads(last["attributes"]["gen_ai.input.messages"])
    assert [m["role"] for m in sent_last] == ["user", "assistant", "tool"]
    assert sent_last[1]["parts"][0]["type"] == "tool_call" and sent_last[1]["parts"][0]["name"] == "get_current_weather"
    assert sent_last[2]["parts"][0]["type"] == "tool_call_response"
    assert json.loads(sent_last[2]["parts"][0]["response"])["temperature"] == "72"
    (root,) = names["invoke_workflow weather"]
    assert json.loads(root["attributes"]["flowrunner.run.inputs"]) == {
        "question": "What's the weather in Boston [redacted:OPENAI_API_KEY]?"}
    assert "temperature 72" in root["attributes"]["flowrunner.run.outputs"]
    assert key not in repr(otlp.requests)  # nowhere in anything sent


def test_the_request_settings_of_the_flow_are_attributes(otlp, tmp_path):
    flow = write_flow(tmp_path, """\
        name: settings
        model: gpt-4o-mini
        defaults: {temperature: 0.2, max_tokens: 50, top_p: 0.9, seed: 7, stop: ["END"]}
        steps:
          - id: reply
            frequency_penalty: 0.5
            presence_penalty: 0.25
            response_format: {type: json_object}
            messages:
              - {role: user, content: 'Answer in JSON: {"a": 1}'}
    """)
    with ChatServer() as server:
        done = flowrun(str(flow), "--base-url", server.base_url, "--trace",
                       env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    chat = by_name(otlp.spans)["chat gpt-4o-mini"][0]  # then maybe repair requests: the answer is no JSON
    attributes = chat["attributes"]
    assert {key: attributes.get(f"gen_ai.request.{key}") for key in
            ("temperature", "max_tokens", "top_p", "seed", "stop_sequences", "frequency_penalty",
             "presence_penalty")} == {"temperature": 0.2, "max_tokens": 50, "top_p": 0.9, "seed": 7,
                                      "stop_sequences": ["END"], "frequency_penalty": 0.5, "presence_penalty": 0.25}
    assert attributes["gen_ai.output.type"] == "json"
    assert done.returncode in (0, 1)  # the test server's answer may not be JSON; the settings are sent either way


def test_retries_are_events_and_a_failed_request_carries_error_type(otlp, tmp_path):
    flow = write_flow(tmp_path, """\
        name: failing
        model: gpt-4o-mini
        retry: {max_attempts: 2, backoff: {initial: 10ms, jitter: none}}
        steps:
          - id: reply
            messages:
              - {role: user, content: Hello world}
    """)
    with ChatServer() as server:
        server.enqueue(faults.rate_limited(retry_after_ms=10), faults.server_error(), faults.server_error())
        done = flowrun(str(flow), "--base-url", server.base_url, "--json",
                       env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    assert done.returncode == 1
    record = json.loads(done.stdout)
    names = by_name(otlp.spans)
    (chat,) = names["chat gpt-4o-mini"]
    (root,) = names["invoke_workflow failing"]
    (agent,) = names["invoke_agent reply"]
    # The 429 was retried (an event); the 500 after it ended the request: the span's error.
    (retry,) = chat["events"]
    assert retry["name"] == "flowrunner.retry" and chat["start"] <= retry["time"] <= chat["end"]
    first_attempt = record["steps"][0]["rounds"][0]["attempts"][0]
    assert retry["time"] == int((first_attempt["started"] + first_attempt["duration"]) * 1_000_000_000)
    assert retry["attributes"]["http.response.status_code"] == 429
    assert retry["attributes"]["error.type"] == "429" and retry["attributes"]["flowrunner.attempt"] == 1
    assert retry["attributes"]["flowrunner.retry.delay"] == pytest.approx(0.01, abs=0.01)
    assert chat["attributes"]["error.type"] == "500" and chat["status"] == ERROR
    assert chat["attributes"]["http.response.status_code"] == 500
    assert "gen_ai.response.id" not in chat["attributes"]
    assert root["status"] == ERROR and root["attributes"]["error.type"] == record["error"]["type"]
    assert agent["status"] == ERROR and agent["attributes"]["error.type"] == record["error"]["type"]
    assert "server had an error" in root["status_message"]


def test_a_wait_for_the_rate_limiter_is_an_event_at_the_requests_start(otlp, tmp_path):
    flow = tmp_path / "weather.yaml"
    flow.write_text((ROOT / "flows/weather.yaml").read_text().replace("model: gpt-4o-mini",
                                                                       "model: gpt-4o-mini\nrate_limit: {rpm: 60}", 1))
    (tmp_path / "weather_tools.py").write_text((ROOT / "flows/weather_tools.py").read_text())
    with ChatServer() as server:
        done = flowrun(str(flow), "--base-url", server.base_url, "--json", env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout)["steps"][0]["rounds"][1]
    assert second["waited_rate_limit"] > 0.1  # one request a second: the second one waited its turn
    chat = by_name(otlp.spans)["chat gpt-4o-mini"][1]
    (wait,) = chat["events"]
    assert wait["name"] == "flowrunner.rate_limit.wait" and wait["time"] == chat["start"]
    assert wait["attributes"]["flowrunner.wait.seconds"] == second["waited_rate_limit"]
    assert chat["attributes"]["flowrunner.waited_rate_limit"] == second["waited_rate_limit"]


def test_a_function_that_raises_is_an_execute_tool_span_in_error(otlp, tmp_path):
    flow = write_flow(tmp_path, """\
        name: raising
        model: gpt-4o-mini
        functions:
          get_current_weather:
            entry: trace_tools:get_current_weather
            description: Get the current weather in a given location
            parameters: {type: object, properties: {location: {type: string}}, required: [location]}
        steps:
          - id: answer
            functions: [get_current_weather]
            messages:
              - {role: user, content: "What's the weather in Boston?"}
    """, tools="""\
        def get_current_weather(location):
            raise ValueError("no weather today")
    """)
    with ChatServer() as server:
        done = flowrun(str(flow), "--base-url", server.base_url, env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    assert done.returncode == 0, done.stderr  # on_error: reply, the default: the model is told
    (tool,) = by_name(otlp.spans)["execute_tool get_current_weather"]
    assert tool["status"] == ERROR and tool["attributes"]["error.type"] == "ValueError"
    assert "no weather today" in tool["status_message"]


def test_each_batch_item_is_a_trace_of_its_own(otlp, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": n, "question": f"What's the weather in {city}?"}) + "\n"
                              for n, city in enumerate(["Boston", "Paris", "Tokyo"])))
    with ChatServer() as server:
        done = flowrun("batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(tmp_path / "out.jsonl"),
                       "--base-url", server.base_url, "--trace", "-c", "2",
                       env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
                            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
    assert done.returncode == 0, done.stderr
    spans = otlp.spans
    roots = by_name(spans)["invoke_workflow weather"]
    assert len(roots) == 3 and len({r["trace_id"] for r in roots}) == 3
    assert all(r["parent_span_id"] == "" for r in roots)
    for root in roots:  # every span of a trace hangs under that trace's root
        inside = [s for s in spans if s["trace_id"] == root["trace_id"]]
        assert len(inside) == 5  # workflow, agent, two chats, one function call
    cities = sorted(json.loads(s["attributes"]["gen_ai.tool.call.arguments"])["location"]
                    for s in by_name(spans)["execute_tool get_current_weather"])
    assert cities == ["Boston", "Paris", "Tokyo"]


def test_a_batch_replaying_its_cassette_still_sends_its_traces(otlp, tmp_path):
    # The cassette patches every HTTP client while the batch runs: the traces must not go through it.
    done = flowrun("batch", "flows/weather.yaml", "--inputs", "flows/data/weather.jsonl", "--out",
                   str(tmp_path / "out.jsonl"), "--cassette", "flows/cassettes/weather.batch.yaml",
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    lines = (ROOT / "flows/data/weather.jsonl").read_text().splitlines()
    assert len(by_name(otlp.spans)["invoke_workflow weather"]) == len(lines)


def test_headers_and_gzip_compression_from_the_standard_variables(otlp):
    done = flowrun("flows/hello.yaml", env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
                                            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-team=data",
                                            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"})
    assert done.returncode == 0, done.stderr
    (headers,) = otlp.headers
    assert headers["authorization"] == "Bearer abc" and headers["x-team"] == "data"
    assert headers["content-encoding"] == "gzip"
    assert len(otlp.spans) == 3


def test_flowrun_test_and_chat_send_traces(otlp):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    done = flowrun("test", "flows/weather.yaml", env=env)  # replayed from the cassettes
    assert done.returncode == 0, done.stdout + done.stderr
    cases = [line for line in done.stdout.splitlines() if line.endswith(" PASSED")]
    roots = by_name(otlp.spans)["invoke_workflow weather"]
    assert len(roots) == len(cases) >= 1
    with ChatServer() as server:
        chat = flowrun("chat", "flows/weather.yaml", "--base-url", server.base_url, env=env,
                       stdin="What's the weather in Paris?\nAnd in Rome?\n")
    assert chat.returncode == 0, chat.stderr
    turns = [s for s in otlp.spans if s["name"] == "invoke_agent answer"][len(cases):]
    # A trace per turn: the answer to the step's own question, then one per line typed.
    assert len(turns) == 3 and len({t["trace_id"] for t in turns}) == 3
    roots = [s for s in otlp.spans if s["name"] == "invoke_workflow weather"][len(cases):]
    assert [json.loads(r["attributes"]["flowrunner.run.inputs"]) for r in roots] == [
        {"question": "What's the weather in Boston?"}] * 3  # the chat's flow inputs
    assert [json.loads(r["attributes"]["flowrunner.run.outputs"])["answer"].split(",")[0] for r in roots] == [
        "get_current_weather: location Boston", "get_current_weather: location Paris",
        "You said: And in Rome?"]  # the test server's "model" found no city in that one


def test_service_name_and_resource_attributes_come_from_the_standard_variables(otlp):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_SERVICE_NAME": "my-flows",
           "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=data"}
    done = flowrun("flows/hello.yaml", env=env)
    assert done.returncode == 0, done.stderr
    resource = otlp.spans[0]["resource"]
    assert resource["service.name"] == "my-flows"
    assert resource["deployment.environment"] == "test" and resource["team"] == "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["run", "batch"])
def test_an_unreachable_collector_is_one_warning_and_the_run_goes_on(tmp_path, command):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["flows/weather.yaml"]
    if command == "batch":
        inputs = tmp_path / "in.jsonl"
        inputs.write_text("".join(json.dumps({"question": f"Weather in {c}?"}) + "\n" for c in ("Oslo", "Rome", "Lima")))
        args = ["batch", *args, "--inputs", str(inputs), "--out", str(tmp_path / "out.jsonl"), "-c", "1"]
    with ChatServer() as server:
        done = flowrun(*args, "--base-url", server.base_url, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, done.stderr
    assert f"could not send the trace to {endpoint}/v1/traces" in warnings[0]
    if command == "run":
        assert "temperature 72" in done.stdout
    else:
        assert "3 succeeded, 0 failed" in done.stdout


def test_a_collector_refusing_the_trace_is_a_warning_too(tmp_path):
    with OTLPReceiver(status=400) as refusing:
        done = flowrun("flows/hello.yaml", env={"OTEL_EXPORTER_OTLP_ENDPOINT": refusing.endpoint})
    assert done.returncode == 0 and "Hello!" in done.stdout
    assert done.stderr.count("warning: could not send the trace") == 1, done.stderr


def test_a_collector_that_never_answers_costs_the_run_one_bounded_wait():
    with OTLPReceiver(delay=120) as hanging:  # longer than the subprocess may take (60 s)
        done = flowrun("flows/hello.yaml", env={"OTEL_EXPORTER_OTLP_ENDPOINT": hanging.endpoint})
        assert len(hanging.requests) == 1  # it did arrive; no answer came
    assert done.returncode == 0 and "Hello!" in done.stdout
    assert done.stderr.count("warning: could not send the trace") == 1, done.stderr


NO_OTEL = "sys.modules['opentelemetry'] = None  # as if the otel extra were not installed"


def test_trace_without_the_extra_is_a_usage_error_naming_the_pip_command():
    done = flowrun("flows/hello.yaml", "--trace", prelude=NO_OTEL)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--trace needs OpenTelemetry" in done.stderr and "pip install 'flowrunner[otel]'" in done.stderr
    assert done.stdout == ""  # nothing ran


def test_the_variables_without_the_extra_are_a_warning_and_the_run_goes_on():
    done = flowrun("flows/hello.yaml", prelude=NO_OTEL, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert done.returncode == 0 and "Hello!" in done.stdout
    assert "warning: OTEL_EXPORTER_OTLP_ENDPOINT is set, but OpenTelemetry is not installed" in done.stderr


LOADED = "import atexit; atexit.register(lambda: print('OTEL', sorted(m for m in sys.modules if m.startswith('opentelemetry'))))"


@pytest.mark.parametrize("args", [["--help"], ["validate", "flows/weather.yaml"], ["flows/weather.yaml"],
                                  ["test", "flows/hello.yaml"]])
def test_without_trace_or_the_variables_nothing_opentelemetry_is_imported(args):
    done = flowrun(*args, prelude=LOADED)
    assert "OTEL []" in done.stdout, done.stdout + done.stderr


def test_otel_sdk_disabled_turns_tracing_off(otlp):
    done = flowrun("flows/hello.yaml", prelude=LOADED,
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_SDK_DISABLED": "true"})
    assert done.returncode == 0 and "OTEL []" in done.stdout
    assert otlp.requests == []


def test_a_grpc_protocol_setting_is_said_to_be_unsupported_and_http_is_used(otlp):
    done = flowrun("flows/hello.yaml", env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
                                            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert done.returncode == 0, done.stderr
    assert "warning: OTEL_EXPORTER_OTLP_PROTOCOL=grpc: flowrunner sends traces as OTLP over HTTP" in done.stderr
    assert sorted(s["name"] for s in otlp.spans) == ["chat gpt-4o-mini", "invoke_agent reply", "invoke_workflow hello"]


def test_a_batch_through_the_batch_api_sends_a_trace_per_input(otlp, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"q{n}", "question": f"What's the weather in {city}?"}) + "\n"
                              for n, city in enumerate(["Boston", "Paris", "Lima"])))
    with ChatServer() as server:
        done = flowrun("batch", "flows/weather.yaml", "--inputs", str(inputs), "--out", str(tmp_path / "out.jsonl"),
                       "--via", "batch-api", "--base-url", server.base_url, "--trace",
                       env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "FLOWRUN_BATCH_POLL": "0.02,0.1"})
    assert done.returncode == 0, done.stderr
    roots = by_name(otlp.spans)["invoke_workflow weather"]
    assert len(roots) == 3 and len({r["trace_id"] for r in roots}) == 3
    assert len(by_name(otlp.spans)["execute_tool get_current_weather"]) == 3
