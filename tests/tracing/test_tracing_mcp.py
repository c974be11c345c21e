"""`flowrun mcp serve` sends a trace per tool call, like `flowrun run` per run (over stdio, the SDK's own client)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402
from otlp_receiver import OTLPReceiver  # noqa: E402

from flowrunner.testing import ChatServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.server


def test_each_tool_call_of_a_served_flow_is_a_trace():
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL") and not k.startswith("OTEL_")}
    with ChatServer() as chat, OTLPReceiver() as otlp:
        server = StdioServerParameters(command=sys.executable, args=[
            "-m", "flowrunner._cli", "mcp", "serve", "flows/weather.yaml", "--base-url", chat.base_url, "--trace"],
            env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint}, cwd=str(ROOT))

        async def go() -> Any:
            async with Client(server) as client:
                return [await client.call_tool("weather", {"question": f"What's the weather in {city}?"})
                        for city in ("Oslo", "Lima")]

        results = anyio.run(go)
        spans = otlp.spans
    assert [r.is_error for r in results] == [False, False]
    roots = [s for s in spans if s["name"] == "invoke_workflow weather"]
    assert len(roots) == 2 and len({r["trace_id"] for r in roots}) == 2
    assert sorted(s["name"] for s in spans if s["trace_id"] == roots[0]["trace_id"]) == [
        "chat gpt-4o-mini", "chat gpt-4o-mini", "execute_tool get_current_weather", "invoke_agent answer",
        "invoke_workflow weather"]
