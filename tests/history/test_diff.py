"""flowrunner.history._diff: what differs between two stored runs, as data."""

from __future__ import annotations

import copy
from typing import Any

from flowrunner.history import StoredRun, diff_runs


def run(record: dict[str, Any], *, flow_hash: str | None = "h1", duration: float | None = 1.0,
        cost: float | None = None, run_id: str = "1a2b3c4d5e6f7a8b9c") -> StoredRun:
    usage = record["usage"]
    return StoredRun(id=run_id, started=1.0, duration=duration, flow=record["flow"], file=record["file"],
                     flow_hash=flow_hash, status=record["status"], models=["m"], prompt_tokens=usage["prompt_tokens"],
                     completion_tokens=usage["completion_tokens"], total_tokens=usage["total_tokens"], cost=cost,
                     error_type=(record["error"] or {}).get("type"), command="run", record=record)


def a_round(content: str | None, calls: list[dict[str, Any]] | None = None, response_id: str = "chatcmpl-1",
            slept: float = 0.0) -> dict[str, Any]:
    return {"response_id": response_id, "model": "m", "finish_reason": "tool_calls" if calls else "stop",
            "content": content, "calls": calls or [], "usage": {"total_tokens": 5},
            "attempts": [{"status": 200, "error": None, "code": None, "message": None, "slept": slept}]}


RECORD: dict[str, Any] = {
    "flow": "weather", "file": "weather.yaml", "status": "succeeded", "inputs": {"question": "Boston?"},
    "outputs": {"answer": "sunny"},
    "steps": [{"id": "answer", "model": "m", "status": "succeeded", "content": "sunny", "warnings": [],
               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
               "rounds": [a_round(None, [{"id": "c1", "name": "lookup", "arguments": {"q": "Boston"}, "result": "72",
                                          "error": None, "raw_arguments": None}]),
                          a_round("sunny")]}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, "error": None,
}


def test_two_runs_differing_only_in_ids_times_and_waits_are_the_same():
    other = copy.deepcopy(RECORD)
    for i, round_ in enumerate(other["steps"][0]["rounds"]):
        round_["response_id"] = f"chatcmpl-other-{i}"
        round_["attempts"][0].update(slept=1.5, started=100.0 + i, duration=0.5)
        round_.update(started=100.0 + i, sent=100.1 + i, latency=0.4, waited_rate_limit=0.0, waited_retry=1.5)
        for call in round_["calls"]:
            call.update(id="call_other", started=101.0, duration=0.01)
    diff = diff_runs(run(RECORD), run(other, run_id="1a2b3c4d5e6f7a8b9d", duration=9.0))
    assert diff.same and diff.same_flow is True
    assert (diff.duration.a, diff.duration.b) == (1.0, 9.0)  # said, but not a difference
    assert diff.inputs == diff.outputs == diff.calls == diff.totals == []
    assert all(step.same for step in diff.steps)


def test_inputs_outputs_calls_totals_and_rounds_that_differ_are_named():
    other = copy.deepcopy(RECORD)
    other["inputs"]["question"] = "Paris?"
    other["outputs"]["answer"] = "rainy"
    rounds = other["steps"][0]["rounds"]
    rounds[0]["calls"][0]["arguments"] = {"q": "Paris"}
    rounds[1]["content"] = "rainy"
    rounds.append(a_round("and more"))
    other["usage"] = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    diff = diff_runs(run(RECORD), run(other, flow_hash="h2", duration=2.0, cost=0.5))
    assert not diff.same and diff.same_flow is False
    assert [(c.name, c.a, c.b) for c in diff.inputs] == [("question", "Boston?", "Paris?")]
    assert [(c.name, c.a, c.b) for c in diff.outputs] == [("answer", "sunny", "rainy")]
    assert diff.calls == []  # one lookup call in each
    assert {c.name: (c.a, c.b) for c in diff.totals} == {
        "prompt_tokens": (3, 4), "total_tokens": (5, 6), "cost": (None, 0.5)}
    (step,) = diff.steps
    first, second, third = step.rounds
    assert first.first_difference == "round 1.calls[0].arguments.q: A 'Boston', B 'Paris'"
    assert '-        "q": "Boston"' in first.lines and '+        "q": "Paris"' in first.lines
    assert not any(line.startswith("@@") for line in first.lines)
    assert second.first_difference == "round 2.content: A 'sunny', B 'rainy'"
    assert third.a is None and third.first_difference == "round 3: only in run B"
    assert all(line.startswith("+") for line in third.lines)


def test_a_failed_run_against_a_succeeded_one():
    failed = copy.deepcopy(RECORD)
    failed.update(status="failed", outputs={}, error={"type": "APIError", "message": "HTTP 500\nmore", "step": "answer"})
    failed["steps"][0]["status"] = "failed"
    failed["steps"][0]["rounds"] = []
    diff = diff_runs(run(RECORD), run(failed, flow_hash=None))
    assert diff.same_flow is None  # a run without a known flow text
    assert {c.name: (c.a, c.b) for c in diff.totals}["error"] == (None, "APIError: HTTP 500")
    assert [(c.name, c.a, c.b) for c in diff.calls] == [("lookup", 1, None)]
    (step,) = diff.steps
    assert (step.status_a, step.status_b) == ("succeeded", "failed")
    assert [r.first_difference for r in step.rounds] == ["round 1: only in run A", "round 2: only in run A"]


def test_a_step_only_one_run_has_is_listed_after_the_others():
    other = copy.deepcopy(RECORD)
    other["steps"].append({**copy.deepcopy(RECORD["steps"][0]), "id": "translate"})
    diff = diff_runs(run(RECORD), run(other))
    assert [(s.id, s.status_a, s.status_b, s.same) for s in diff.steps] == [
        ("answer", "succeeded", "succeeded", True), ("translate", None, "succeeded", False)]


def test_records_that_are_not_what_flowrunner_writes_do_not_break_the_diff():
    odd = {"flow": "x", "file": "x", "status": "succeeded", "usage": {"prompt_tokens": 0, "completion_tokens": 0,
           "total_tokens": 0}, "error": None, "inputs": [1, 2], "steps": ["not a step", {"rounds": "nope"}]}
    diff = diff_runs(run(RECORD), run(odd))
    assert not diff.same and [c.name for c in diff.inputs] == ["question"]


def with_requests(record: dict[str, Any], question: str, call_id: str) -> dict[str, Any]:
    """The record with each round's request as the engine keeps it: the messages sent so far."""
    record = copy.deepcopy(record)
    user = {"role": "user", "content": question}
    asked = {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]}
    answered = {"role": "tool", "tool_call_id": call_id, "content": "72"}
    first, second = record["steps"][0]["rounds"]
    first["request"] = {"model": "m", "messages": [user]}
    second["request"] = {"model": "m", "messages": [user, asked, answered]}
    return record


def test_the_requests_sent_are_compared_round_by_round_without_their_call_ids():
    a = with_requests(RECORD, "Boston?", "call_a")
    same = with_requests(RECORD, "Boston?", "call_b")  # only the ids the server drew differ
    assert diff_runs(run(a), run(same, run_id="1a2b3c4d5e6f7a8b9d")).same
    other = with_requests(RECORD, "Boston, please?", "call_b")
    diff = diff_runs(run(a), run(other, run_id="1a2b3c4d5e6f7a8b9d"))
    first = diff.steps[0].rounds[0]
    assert first.first_difference == "round 1.request.messages[0].content: A 'Boston?', B 'Boston, please?'"
    assert any(line.startswith("+") and "Boston, please?" in line for line in first.lines)
