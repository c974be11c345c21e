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
    # The default phases: 1 s validating, 1,000 lines a second, 1 s finalizing.
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


def test_each_line_gets_the_answer_the_chat_endpoint_gives_the_same_body(
        server: ChatServer, client: openai.OpenAI) -> None:
    bodies = [chat_body(1), chat_body(2, max_tokens=2),
              {"model": MODEL, "tools": [WEATHER],
               "messages": [{"role": "user", "content": "What is the weather like in Boston?"}]},
              {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 9},
              {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "not_a_parameter": 1}]
    batch = submit(client, [line(f"b{i}", body) for i, body in enumerate(bodies)])
    server.batches.complete_all()
    done = client.batches.retrieve(batch.id)
    assert done.request_counts.model_dump() == {"total": 5, "completed": 3, "failed": 2}
    answered = {o["custom_id"]: o for o in results(client, done.output_file_id) + results(client, done.error_file_id)}
    for i, body in enumerate(bodies):
        got = answered[f"b{i}"]["response"]
        rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
        if i < 3:
            live = client.chat.completions.with_raw_response.create(
                model=body["model"], messages=body["messages"], extra_body=rest).http_response.json()
            assert got["status_code"] == 200
            assert {**got["body"], "created": 0} == {**live, "created": 0}
        else:
            with pytest.raises(openai.BadRequestError) as refused:
                client.chat.completions.create(model=body["model"], messages=body["messages"], extra_body=rest)
            assert got["status_code"] == 400 and got["body"] == refused.value.response.json()
    assert answered["b2"]["response"]["body"]["choices"][0]["finish_reason"] == "tool_calls"


def test_queued_replies_answer_lines_in_input_order_and_broken_connections_become_line_errors(
        server: ChatServer, client: openai.OpenAI) -> None:
    server.enqueue(faults.completion("scripted one"), faults.rate_limited(), faults.dropped(),
                   faults.bad_gateway_html())
    batch = submit(client, [line(f"q{i}", chat_body(i)) for i in range(5)])
    server.batches.complete_all()
    done = client.batches.retrieve(batch.id)
    assert done.request_counts.model_dump() == {"total": 5, "completed": 2, "failed": 3}
    output = {o["custom_id"]: o for o in results(client, done.output_file_id)}
    errors = {o["custom_id"]: o for o in results(client, done.error_file_id)}
    assert output["q0"]["response"]["body"]["choices"][0]["message"]["content"] == "scripted one"
    assert output["q4"]["response"]["body"]["choices"][0]["message"]["content"].startswith("You said")
    assert errors["q1"]["response"]["status_code"] == 429
    assert errors["q1"]["response"]["body"]["error"]["code"] == "rate_limit_exceeded"
    assert errors["q2"]["response"] is None and errors["q2"]["error"]["code"] == "server_error"
    assert errors["q3"]["response"]["status_code"] == 502
    assert "Bad Gateway" in errors["q3"]["response"]["body"]
    ids = [o["id"] for o in [*output.values(), *errors.values()]]
    assert len(set(ids)) == 5 and all(i.startswith("batch_req_") for i in ids)


@pytest.mark.parametrize(("text", "code", "line_number"), [
    (b"", "empty_file", None),
    (b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}\nnot json\n',
     "invalid_json_line", 2),
    (jsonl([line("a", chat_body(1)), line("a", chat_body(2))]), "duplicate_custom_id", 2),
    (jsonl([line("a", chat_body(1), url="/v1/embeddings")]), "url_mismatch", 1),
    (jsonl([line("a", chat_body(1), method="GET")]), "invalid_method", 1),
    (jsonl([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}]), "missing_required_parameter", 1),
    (jsonl([line("a", chat_body(1)), line("b", {**chat_body(2), "model": "gpt-4o"})]), "model_mismatch", 2),
    (jsonl([line("a", "not an object")]), "invalid_request", 1),
    (jsonl([line(str(i), chat_body(i)) for i in range(4)]), "too_many_tasks", None),
])
def test_an_invalid_input_file_fails_the_batch_with_openais_line_errors(
        text: bytes, code: str, line_number: int | None) -> None:
    with ChatServer(batch=BatchSettings(speed=0, max_lines=3)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        uploaded = client.files.create(file=("bad.jsonl", text), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        server.batches.advance(1)
        failed = check("Batch", client.batches.retrieve(batch.id))
    assert failed["status"] == "failed" and failed["failed_at"] == failed["created_at"] + 1
    assert failed["output_file_id"] is None and failed["error_file_id"] is None
    first = failed["errors"]["data"][0]
    assert (first["code"], first["line"]) == (code, line_number)
    assert first["message"]


def test_a_batch_not_done_in_its_window_expires_with_its_unanswered_lines_in_the_error_file() -> None:
    with ChatServer(batch=BatchSettings(speed=0, lines_per_second=1 / 3600)) as server:  # a line an hour
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        batch = submit(client, [line(f"e{i}", chat_body(i)) for i in range(30)])
        server.batches.advance(23 * 3600)
        assert client.batches.retrieve(batch.id).status == "in_progress"
        assert client.batches.retrieve(batch.id).request_counts.completed == 22
        server.batches.advance(3600)
        expired = check("Batch", client.batches.retrieve(batch.id))
    assert expired["status"] == "expired" and expired["expired_at"] == expired["expires_at"]
    assert expired["request_counts"] == {"total": 30, "completed": 23, "failed": 7}
    output = results(client, expired["output_file_id"])
    errors = results(client, expired["error_file_id"])
    assert sorted(o["custom_id"] for o in output) == sorted(f"e{i}" for i in range(23))
    assert sorted(e["custom_id"] for e in errors) == sorted(f"e{i}" for i in range(23, 30))
    assert all(e["response"] is None and e["error"]["code"] == "batch_expired" for e in errors)


def test_a_cancelled_batch_keeps_its_partial_results(server: ChatServer, client: openai.OpenAI) -> None:
    batch = submit(client, [line(f"c{i}", chat_body(i)) for i in range(5000)])
    server.batches.advance(3.5)  # validating 1 s, then 2,500 lines
    cancelling = check("Batch", client.batches.cancel(batch.id))
    assert cancelling["status"] == "cancelling" and cancelling["request_counts"]["completed"] == 2500
    server.batches.advance(0.5)
    assert client.batches.retrieve(batch.id).status == "cancelling"
    server.batches.advance(0.5)
    cancelled = check("Batch", client.batches.retrieve(batch.id))
    assert cancelled["status"] == "cancelled" and cancelled["request_counts"]["completed"] == 2500
    assert cancelled["cancelled_at"] == cancelled["cancelling_at"] + 1
    assert len(results(client, cancelled["output_file_id"])) == 2500
    assert client.batches.cancel(batch.id).status == "cancelled"  # again: no change
    with pytest.raises(openai.ConflictError, match="Cannot cancel a batch with status 'failed'"):
        server.batches.fail_next()
        failing = submit(client, [line("x", chat_body(1))])
        server.batches.advance(1)
        client.batches.cancel(failing.id)


def test_the_server_can_fail_expire_or_cancel_the_next_batches(server: ChatServer, client: openai.OpenAI) -> None:
    server.batches.fail_next()
    server.batches.expire_next()
    server.batches.cancel_next()
    batches = [submit(client, [line(f"f{i}", chat_body(i)) for i in range(10)]) for _ in range(4)]
    server.batches.complete_all()
    done = [check("Batch", client.batches.retrieve(b.id)) for b in batches]
    assert [b["status"] for b in done] == ["failed", "expired", "cancelled", "completed"]
    assert done[0]["errors"]["data"][0]["code"] == "token_limit_exceeded"
    assert "Limit: 90,000 enqueued tokens." in done[0]["errors"]["data"][0]["message"]
    assert done[1]["request_counts"] == {"total": 10, "completed": 5, "failed": 5}
    assert {e["error"]["code"] for e in results(client, done[1]["error_file_id"])} == {"batch_expired"}
    assert done[2]["request_counts"] == {"total": 10, "completed": 5, "failed": 0}
    assert done[2]["error_file_id"] is None


def test_scripted_replies_answer_the_next_requests_to_a_route(server: ChatServer, client: openai.OpenAI) -> None:
    server.batches.enqueue("upload", faults.server_error())
    with pytest.raises(openai.InternalServerError):
        client.files.create(file=("in.jsonl", jsonl([line("a", chat_body(1))])), purpose="batch")
    assert server.batch_stats.files_uploaded == 0
    server.batches.enqueue("create", faults.insufficient_quota())
    uploaded = client.files.create(file=("in.jsonl", jsonl([line("a", chat_body(1))])), purpose="batch")
    with pytest.raises(openai.RateLimitError, match="quota"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert server.batch_stats.batches_created == 0
    with pytest.raises(ValueError, match="unknown route 'uplod'"):
        server.batches.enqueue("uplod", faults.server_error())


def test_with_an_api_key_the_batch_routes_need_it() -> None:
    with ChatServer(api_key="the-key", batch=BatchSettings(speed=0)) as server:
        wrong = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong-key-00000000", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
            wrong.files.create(file=("in.jsonl", jsonl([line("a", chat_body(1))])), purpose="batch")
        with pytest.raises(openai.AuthenticationError):
            wrong.batches.list()
        right = openai.OpenAI(base_url=server.base_url, api_key="the-key", max_retries=0)
        assert submit(right, [line("a", chat_body(1))]).status == "validating"


def test_queue_limits_fail_a_batch_that_would_pass_them_while_others_are_in_progress() -> None:
    with ChatServer(batch=BatchSettings(speed=0, enqueued_requests=15, lines_per_second=1)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        first = submit(client, [line(f"a{i}", chat_body(i)) for i in range(10)])
        server.batches.advance(1)
        second = submit(client, [line(f"b{i}", chat_body(i)) for i in range(10)])
        server.batches.advance(1)
        refused = client.batches.retrieve(second.id)
        assert refused.status == "failed" and refused.errors is not None
        error = refused.errors.data[0]
        assert error.code == "request_limit_exceeded"
        assert error.message == (f"Enqueued request limit reached for {MODEL} in organization "
                                 f"{faults.ORGANIZATION}. Limit: 15 enqueued requests. Please try "
                                 "again once some in_progress batches have been completed.")
        server.batches.complete_all()
        assert client.batches.retrieve(first.id).status == "completed"
        assert submit(client, [line(f"c{i}", chat_body(i)) for i in range(10)]).status == "validating"
        server.batches.complete_all()
        assert [b.status for b in client.batches.list()] == ["completed", "failed", "completed"]
    with ChatServer(batch=BatchSettings(speed=0, enqueued_tokens=20)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        batch = submit(client, [line(f"a{i}", chat_body(i)) for i in range(5)])  # 5 words a line
        server.batches.complete_all()
        failed = client.batches.retrieve(batch.id)
        assert failed.errors is not None and failed.errors.data[0].code == "token_limit_exceeded"
        assert "Limit: 20 enqueued tokens." in (failed.errors.data[0].message or "")


def test_uploads_are_checked_as_openai_checks_them() -> None:
    with ChatServer(batch=BatchSettings(speed=0, max_bytes=1000)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="File is too large: 1001 bytes"):
            client.files.create(file=("big.jsonl", b"x" * 1001), purpose="batch")
        with pytest.raises(openai.BadRequestError, match="File is too large"):  # refused unread
            client.files.create(file=("big.jsonl", b"x" * 100_000), purpose="batch")
        assert client.files.create(file=("ok.jsonl", b"x" * 1000), purpose="batch").bytes == 1000
        with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
            client.files.create(file=("in.csv", b"a,b"), purpose="batch")
        with pytest.raises(openai.BadRequestError, match="Invalid value for 'purpose'"):
            client.files.create(file=("in.jsonl", b"{}"), purpose="nonsense")  # type: ignore[arg-type]
        user_file = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
        with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
            client.batches.create(input_file_id=user_file.id, endpoint="/v1/chat/completions", completion_window="24h")
        with pytest.raises(openai.NotFoundError, match="No such File object: file-nope"):
            client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
        with pytest.raises(openai.BadRequestError, match="completion_window"):
            client.batches.create(input_file_id=user_file.id, endpoint="/v1/chat/completions",
                                  completion_window="1h")  # type: ignore[arg-type]
        listed = client.files.list(purpose="batch")
        check("ListFilesResponse", listed.model_dump())
        assert [f.filename for f in listed.data] == ["ok.jsonl"]
        assert server.batch_stats.files_uploaded == 2


def test_a_real_time_clock_sped_up_moves_batches_without_help() -> None:
    with ChatServer(batch=BatchSettings(speed=100)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        batch = submit(client, [line(f"t{i}", chat_body(i)) for i in range(100)])
        deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
        while client.batches.retrieve(batch.id).status != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.batches.retrieve(batch.id).request_counts.completed == 100


def test_ten_thousand_lines_upload_process_and_download_with_a_fast_clock() -> None:
    """The client's benchmark runs 10,000 inputs through here: no step may be quadratic."""
    with ChatServer(batch=BatchSettings(speed=0, lines_per_second=math.inf)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        batch = submit(client, [line(f"n{i}", chat_body(i)) for i in range(10_000)])
        server.batches.complete_all()
        done = client.batches.retrieve(batch.id)
        assert done.request_counts.completed == 10_000
        assert len(results(client, done.output_file_id)) == 10_000


def test_the_chat_spec_declares_the_values_its_shape_cache_blanks_unconstrained() -> None:
    """`_spec` reads documents differing only in these values as equally valid: true only while
    every property of these names in the chat spec is a plain string or integer."""
    from flowrunner._resources import load_json
    from flowrunner.testing import _spec

    plain = [{"type": "string"}, {"type": "string", "deprecated": True}, {"type": "integer"},
             {"type": "integer", "default": 0}, {"type": "integer", "format": "unixtime"}]
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, schema in (node.get("properties") or {}).items():
                if name in _spec._FREE_STRINGS | _spec._FREE_INTEGERS:
                    found.append((name, schema))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(load_json("openai/chat-completions.openapi.json"))
    for name, schema in found:
        if name in _spec._FREE_INTEGERS or schema.get("type") == "string":
            assert schema in plain, (name, schema)
        else:  # content: a string, or parts / logprobs whose strings are not what is blanked
            text = json.dumps(schema)
            assert '{"type": "string"}' in text or "array" in text, (name, schema)
            assert "maxLength" not in text and "pattern" not in text and "minLength" not in text
    assert {name for name, _ in found} >= {"content", "id", "arguments", "tool_call_id", "created"}


def test_the_command_line_server_runs_batches_on_its_flags() -> None:
    import re
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "flowrunner.testing.server", "--port", "0", "--batch-speed", "1000",
               "--batch-max-lines", "2", "--batch-lines-per-second", "inf"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            found = re.search(r"http://127\.0\.0\.1:\d+/v1", process.stdout.readline())
            assert found is not None
            client = openai.OpenAI(base_url=found.group(), api_key="test", max_retries=0)
            good = submit(client, [line("a", chat_body(1)), line("b", chat_body(2))])
            too_many = submit(client, [line(str(i), chat_body(i)) for i in range(3)])
            deadline = time.monotonic() + 60  # a hang guard
            while {client.batches.retrieve(b.id).status for b in (good, too_many)} != {"completed", "failed"}:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert client.batches.retrieve(good.id).status == "completed"
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 0 and err == ""
    refused = subprocess.run([sys.executable, "-m", "flowrunner.testing.server", "--batch-lines-per-second", "0"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--batch-lines-per-second: lines_per_second must be > 0" in refused.stderr


def test_the_batch_spec_copy_is_whole_and_openais() -> None:
    from flowrunner._resources import load_json

    spec = load_json("openai/batch-files.openapi.json")
    assert spec["info"]["license"]["identifier"] == "MIT" and "f85dbe2" in spec["info"]["title"]
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].rsplit("/", 1)[1])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(spec)
    assert refs <= set(spec["components"]["schemas"]) and len(spec["components"]["schemas"]) == 12
    assert {"/batches", "/batches/{batch_id}/cancel", "/files/{file_id}/content"} <= set(spec["paths"])


def test_requests_the_sdk_would_not_send_get_openais_errors(server: ChatServer) -> None:
    import http.client

    def send(method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers={"content-type": content_type})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    assert send("POST", "/v1/files", b'{"purpose": "batch"}')[0] == 400
    status, body = send("POST", "/v1/files", b"--x\r\nno headers here--x--", "multipart/form-data; boundary=x")
    assert status == 400 and "multipart" in body["error"]["message"]
    status, body = send("POST", "/v1/files", b"--x--\r\n", "multipart/form-data")
    assert status == 400 and "boundary" in body["error"]["message"]
    assert send("PUT", "/v1/batches")[0] == 405
    assert send("GET", "/v1/batches/b/cancel")[0] == 405
    assert send("GET", "/v1/batches/b/nonsense")[0] == 404
    assert send("GET", "/v1/files//content")[0] == 404
    status, body = send("GET", "/v1/batches?limit=1000")
    assert status == 400 and body["error"]["param"] == "limit"
    assert send("GET", "/v1/files?limit=x")[0] == 400
    status, body = send("POST", "/v1/batches", b'{"input_file_id": "f", "endpoint": "/v1/embeddings", '
                        b'"completion_window": "24h"}')
    assert status == 400 and body["error"]["param"] == "endpoint"
    status, body = send("POST", "/v1/batches", b"[1, 2]")
    assert status == 400 and body["error"]["message"].startswith("Invalid type for the request body")
    status, body = send("POST", "/v1/batches", json.dumps({
        "input_file_id": "f", "endpoint": "/v1/chat/completions", "completion_window": "24h",
        "metadata": {f"k{i}": "v" for i in range(17)}}).encode())
    assert status == 400 and body["error"]["param"] == "metadata"


def test_an_upload_over_the_limit_is_refused_unread_but_a_missing_key_is_said_first() -> None:
    with ChatServer(api_key="the-key", batch=BatchSettings(speed=0, max_bytes=10)) as server:
        wrong = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong-key-00000000", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.files.create(file=("big.jsonl", b"x" * 200_000), purpose="batch")
        right = openai.OpenAI(base_url=server.base_url, api_key="the-key", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="File is too large"):
            right.files.create(file=("big.jsonl", b"x" * 200_000), purpose="batch")
        assert [r.raw for r in server.requests] == [b"", b""]


def test_a_second_rounds_body_with_tool_results_gets_the_live_answer(server: ChatServer, client: openai.OpenAI) -> None:
    first = {"model": MODEL, "tools": [WEATHER],
             "messages": [{"role": "user", "content": "What is the weather like in Boston?"}]}
    asked = client.chat.completions.create(**first).choices[0].message  # type: ignore[call-overload]
    assert asked.tool_calls
    second = {**first, "messages": [
        *first["messages"], asked.model_dump(exclude_none=True),
        *({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 72})}
          for call in asked.tool_calls)]}
    batch = submit(client, [line("round-2", second)])
    server.batches.complete_all()
    [answered] = results(client, client.batches.retrieve(batch.id).output_file_id)
    live = client.chat.completions.with_raw_response.create(**second).http_response.json()  # type: ignore[call-overload]
    assert {**answered["response"]["body"], "created": 0} == {**live, "created": 0}
    assert "72" in live["choices"][0]["message"]["content"]
