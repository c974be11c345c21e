"""MCP exchanges in cassettes: recorded against the real mcp-server-time, replayed with the server out of reach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp_helpers import TIME_SERVER, record_dict, time_flow_text

from flowrunner._cassette import use_cassette
from flowrunner._exceptions import CassetteMissError, ConfigError
from flowrunner.mcp._tape import Tape, check_section

ROOT = Path(__file__).resolve().parents[2]


def flowrun(*args: str, path: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update({"PATH": path, **(extra_env or {})})
    return subprocess.run([sys.executable, "-m", "flowrunner._cli", *args], text=True, capture_output=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.mark.server
def test_recorded_then_replayed_with_the_server_out_of_reach_gives_the_same_record(tmp_path, chat_server):
    assert TIME_SERVER is not None
    flow = tmp_path / "time.yaml"
    # The bare command, found on PATH: the replay runs with an empty PATH, where it cannot be found.
    flow.write_text(time_flow_text(server="mcp-server-time"))
    cassette = tmp_path / "time.cassette.yaml"
    recorded = flowrun("run", str(flow), "--base-url", chat_server.base_url, "--record-mode", "all",
                       "--cassette", str(cassette), "--json", path=str(Path(TIME_SERVER).parent))
    assert recorded.returncode == 0, recorded.stderr
    section = __import__("yaml").safe_load(cassette.read_text())["mcp"]
    assert [tool["name"] for tool in section["servers"]["time"]["tools"]] == ["get_current_time", "convert_time"]
    assert [(c["server"], c["tool"], c["arguments"]) for c in section["calls"]] == \
        [("time", "get_current_time", {"timezone": "Europe/Paris"})]
    replayed = flowrun("run", str(flow), "--record-mode", "none", "--cassette", str(cassette), "--json", path="")
    assert replayed.returncode == 0, replayed.stderr
    live, again = json.loads(recorded.stdout), json.loads(replayed.stdout)
    assert record_dict(again) == record_dict(live)
    assert live["steps"][0]["rounds"][0]["calls"][0]["server"] == "time"
    # and live, with the server out of reach, it says so
    missing = flowrun("run", str(flow), "--base-url", chat_server.base_url, path="")
    assert missing.returncode == 1 and "'mcp-server-time' is not an executable on PATH" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.server
def test_secrets_in_mcp_traffic_are_redacted_and_still_replay(tmp_path, chat_server):
    flow = tmp_path / "time.yaml"
    flow.write_text(time_flow_text(server_keys="env: {ZONE_TOKEN: {env: MCPC_ZONE}}"))
    cassette = tmp_path / "c.yaml"
    secret = {"MCPC_ZONE": "Europe/Paris"}  # a secret that the model's arguments happen to hold
    recorded = flowrun("run", str(flow), "--base-url", chat_server.base_url, "--record-mode", "all",
                       "--cassette", str(cassette), "--json", path=os.environ["PATH"], extra_env=secret)
    assert recorded.returncode == 0, recorded.stderr
    text = cassette.read_text()
    assert "Europe/Paris" not in text and "[redacted:MCPC_ZONE]" in text
    replayed = flowrun("run", str(flow), "--record-mode", "none", "--cassette", str(cassette), "--json",
                       path="", extra_env=secret)
    assert replayed.returncode == 0, replayed.stderr
    assert record_dict(json.loads(replayed.stdout)) == record_dict(json.loads(recorded.stdout))


RECORDED = {
    "servers": {"time": {"tools": [{"name": "get_current_time", "inputSchema": {"type": "object"}}]}},
    "calls": [{"server": "time", "tool": "get_current_time", "arguments": {"timezone": "Europe/Paris"},
               "result": {"text": "noon", "is_error": False}},
              {"server": "time", "tool": "get_current_time", "arguments": {"timezone": "Asia/Tokyo"},
               "error": "tool 'get_current_time' of mcp server 'time' did not answer", "reason": "no answer"}],
}


def test_a_replay_plays_each_recording_once_and_says_how_a_miss_differs():
    tape = Tape(RECORDED, replay=True, record_mode="none", path="c.yaml")
    assert tape.play("time", "get_current_time", {"timezone": "Europe/Paris"})["result"]["text"] == "noon"
    assert tape.play("time", "get_current_time", {"timezone": "Europe/Paris"}) is None
    miss = tape.describe_miss("time", "get_current_time", {"timezone": "Europe/Pariss"})
    assert miss.splitlines()[:2] == [
        "the MCP call time.get_current_time({\"timezone\": \"Europe/Pariss\"}) is not in cassette c.yaml "
        "(record mode 'none')",
        "  closest recording (call 1 of 2) differs: arguments.timezone: recorded 'Europe/Paris', now 'Europe/Pariss'"]
    again = tape.describe_miss("time", "get_current_time", {"timezone": "Europe/Paris"})
    assert "every recording of it was already played in this run" in again
    other = tape.describe_miss("time", "convert_time", {})
    assert "no call of time.convert_time was recorded (recorded: time.get_current_time)" in other


def test_a_replayed_endpoint_raises_what_the_live_one_raised():
    from flowrunner.mcp import _Endpoint
    from flowrunner.mcp._config import ServerSpec

    tape = Tape(RECORDED, replay=True, record_mode="none", path="c.yaml")
    endpoint = _Endpoint(ServerSpec(name="time", command=("mcp-server-time",)), None, tape)
    assert endpoint.tools == RECORDED["servers"]["time"]["tools"]
    from flowrunner._exceptions import FunctionError

    with pytest.raises(FunctionError, match="did not answer"):
        endpoint.call("get_current_time", {"timezone": "Asia/Tokyo"})
    with pytest.raises(CassetteMissError, match="every recording of it was already played"):
        endpoint.call("get_current_time", {"timezone": "Asia/Tokyo"})
    with pytest.raises(CassetteMissError, match="holds no tools of mcp server 'web'"):
        _Endpoint(ServerSpec(name="web", url="http://127.0.0.1:9/mcp"), None, tape)


@pytest.mark.parametrize("section, problem", [
    ([], "expected a mapping with servers and calls, got a list"),
    ({"servers": {"time": {"tools": [{}]}}}, "servers.time: expected tools: a list of tools, each with a name"),
    ({"calls": [{"server": "time", "tool": "t", "arguments": {}}]},
     "call 1 of 1: expected exactly one of result, error, failure"),
    ({"calls": [{"server": "time", "tool": "t", "arguments": "x", "result": {"text": ""}}]},
     "call 1 of 1: arguments: expected a mapping, got 'x'"),
])
def test_a_broken_mcp_section_is_said_when_the_cassette_is_read(tmp_path, section, problem):
    assert check_section(section) == problem
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"interactions": [], "version": 1, "mcp": section}))
    with pytest.raises(ConfigError) as caught:
        with use_cassette(path, "none"):
            pass
    assert str(caught.value).startswith(f"{path} is not a readable cassette: mcp: {problem}")
