"""The test server's Files and Batch API, over real HTTP with the official SDK."""

from __future__ import annotations

import json
import math
import time
from typing import Any, Iterator

import openai
import pytest

from flowrunner.testing import BatchSettings, ChatServer, faults
from flowrunner.testing import _batchspec

pytestmark = pytest.mark.server

MODEL = "gpt-4o-mini"
WEATHER = {"type": "function", "function": {
    "name": "get_current_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}


def chat_body(i: int, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Please say hello number {i}"}], **extra}


def line(custom_id: str, body: Any, **changes: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body, **changes}


def jsonl(items: list[Any]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in items).encode()


def check(schema: str, obj: Any) -> dict[str, Any]:
    """The SDK object as JSON, after checking it against OpenAI's spec."""
    document = obj.model_dump() if hasattr(obj, "model_dump") else obj
    assert _batchspec.object_errors(schema, document) == []
    return document  # type: ignore[no-any-return]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    """A server whose batch clock moves only when the test advances it."""
    with ChatServer(batch=BatchSettings(speed=0)) as server:
        yield server


@pytest.fixture
def client(server: ChatServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def submit(client: openai.OpenAI, items: list[Any], name: str = "in.jsonl") -> Any:
    uploaded = client.files.create(file=(name, jsonl(items)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h")


def results(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(text) for text in client.files.content(file_id).text.splitlines()]


def test_a_batch_goes_through_every_phase_on_the_clock_and_its_objects_match_the_spec(
        server: ChatServer, client: openai.OpenAI) -> None:
    server.batches.settings  # the defaults: 1 s validating, 1000 lines/s, 1 s finalizing
    uploaded = client.files.create(file=("in.jsonl", jsonl([line(f"r{i}", chat_body(i)) for i in range(3000)])),
                                   purpose="batch")
    assert check("OpenAIFile", uploaded)["purpose"] == "batch"
    assert check("OpenAIFile", client.files.retrieve(uploaded.id)) == uploaded.model_dump()
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"job": "nightly"})
    created = check("Batch", batch)
    assert (created["status"], created["metadata"], created["expires_at"]) == (
        "validating", {"job": "nightly"}, created["created_at"] + 86400)
    seen = [created["status"]]
    for _ in range(6):
        server.batches.advance(1)
        now = check("Batch", client.batches.retrieve(batch.id))
        seen.append(now["status"])
        if now["status"] == "in_progress":
            assert now["request_counts"]["completed"] in (0, 1000, 2000)
    assert seen[:5] == ["validating", "in_progress", "in_progress", "in_progress", "finalizing"]
    done = check("Batch", client.batches.retrieve(batch.id))
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 3000, "completed": 3000, "failed": 0}
    stamps = [done[k] for k in ("created_at", "in_progress_at", "finalizing_at", "completed_at")]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] == 5
    assert done["error_file_id"] is None
    output = results(client, done["output_file_id"])
    assert sorted(o["custom_id"] for o in output) == sorted(f"r{i}" for i in range(3000))
    assert [o["custom_id"] for o in output] != [f"r{i}" for i in range(3000)]
    assert all(o["response"]["status_code"] == 200 and o["error"] is None for o in output)
    assert done["usage"]["total_tokens"] == sum(o["response"]["body"]["usage"]["total_tokens"] for o in output)
    check("OpenAIFile", client.files.retrieve(done["output_file_id"]))
    assert client.files.retrieve(done["output_file_id"]).purpose == "batch_output"


def test_the_core_routes_answer_as_the_sdk_expects(server: ChatServer, client: openai.OpenAI) -> None:
    first = submit(client, [line("a", chat_body(1))])
    second = submit(client, [line("a", chat_body(1))])
    page = client.batches.list(limit=1)
    check("ListBatchesResponse", page.model_dump())
    assert [b.id for b in page.data] == [second.id] and page.has_more
    assert [b.id for b in client.batches.list(limit=5, after=second.id).data] == [first.id]
    cancelled = client.batches.cancel(first.id)
    assert check("Batch", cancelled)["status"] == "cancelling"
    server.batches.complete_all()
    assert client.batches.retrieve(first.id).status == "cancelled"
    assert client.batches.retrieve(second.id).status == "completed"
    deleted = client.files.delete(first.input_file_id)
    assert check("DeleteFileResponse", deleted.model_dump())["deleted"] is True
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        client.files.retrieve(first.input_file_id)
    with pytest.raises(openai.NotFoundError, match="No batch found"):
        client.batches.retrieve("batch_nope")
    stats = server.batch_stats
    assert (stats.files_uploaded, stats.files_deleted, stats.batches_created) == (2, 1, 2)
    assert stats.custom_ids == {"a": 2} and stats.submitted_twice() == ["a"]
    assert stats.batches_by_input_file == {first.input_file_id: 1, second.input_file_id: 1}
