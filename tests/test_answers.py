"""Final answers that are not plain text, over HTTP against the test server: a content filter's stop, a
streamed spoken answer, an empty answer; and what `settle` says for each kind.

The genuine recordings (refusals, cut answers, answers left empty by reasoning, a spoken answer) are
run in test_real_responses.py. No genuine recording of the two kinds built here could be found (see
tests/data/real-responses/README.md), so these are SPEC-BUILT, NOT RECORDED:
- `content_filter`: shaped by the spec's CreateChatCompletionResponse / CreateChatCompletionStreamResponse
  (and checked against them below), with the fields OpenAI sends today (usage details, service_tier,
  system_fingerprint, annotations, logprobs, obfuscation on stream chunks);
- a streamed spoken answer: the spec has no `delta.audio` (openai/openai-openapi#577), so the chunks
  follow the sequence reported in openai/openai-node#1206: transcript pieces, the id with the first
  data, more data, and an `expires_at`-only chunk with no finish_reason.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from flowrunner import (ContentFilterError, EmptyAnswerError, Engine, OpenAITransport, RefusalError,
                        TruncatedAnswerError)
from flowrunner._answers import audio_note, settle, token_limit
from flowrunner._transport import parse_completion
from flowrunner.testing import Reply, faults
from flowrunner.testing._spec import chunk_errors, response_errors

MODEL = "gpt-4o-2024-08-06"
USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                       "rejected_prediction_tokens": 0}}
HEAD = {"id": "chatcmpl-SpecBuiltNotRecorded00000000", "created": 1766084443, "model": MODEL,
        "service_tier": "default", "system_fingerprint": "fp_specbuilt"}

# Spec-built, not recorded: a content filter's stop. OpenAI omits the content ("") and says why in finish_reason.
FILTERED = {**HEAD, "object": "chat.completion",
            "choices": [{"index": 0, "logprobs": None, "finish_reason": "content_filter",
                         "message": {"role": "assistant", "content": "", "refusal": None, "annotations": []}}],
            "usage": {**USAGE, "completion_tokens": 0, "total_tokens": 12}}


def chunk(delta: dict[str, Any] | None, finish: str | None = None, *, usage: dict[str, Any] | None = None,
          pad: str = "obf") -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI streams it today (usage null until the last, an obfuscation pad)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {**HEAD, "object": "chat.completion.chunk", "choices": choices, "usage": usage, "obfuscation": pad}


def sse(chunks: list[dict[str, Any]]) -> str:
    return "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks) + "data: [DONE]\n\n"


# Spec-built, not recorded: a stream the filter stops after a few words.
FILTERED_STREAM = [chunk({"role": "assistant", "content": "", "refusal": None}), chunk({"content": "Here is"}),
                   chunk({"content": " how"}), chunk({}, "content_filter"), chunk(None, usage=USAGE)]

# Built from the chunk sequence reported in openai/openai-node#1206 (the spec has no delta.audio), not recorded.
AUDIO_ID = "audio_6929601ab5e88190a1b2c3d4e5f60718"
PIECES = [base64.b64encode(bytes(range(i, i + 60))).decode() for i in (0, 60, 120)]
SPOKEN_STREAM = [
    chunk({"role": "assistant", "content": None, "refusal": None, "audio": {"transcript": "Hello"}}),
    chunk({"audio": {"transcript": " there!"}}),
    chunk({"audio": {"id": AUDIO_ID, "data": PIECES[0]}}),
    chunk({"audio": {"data": PIECES[1]}}),
    chunk({"audio": {"data": PIECES[2]}}),
    chunk({"audio": {"expires_at": 1766088043}}),  # the last choice chunk: no finish_reason
    chunk(None, usage={**USAGE, "completion_tokens": 40, "total_tokens": 52}),
]

FLOW = """\
name: answers
model: gpt-4o
steps:
  - id: ask
    messages: [{role: user, content: "Say something."}]
OPTIONS
  - id: then
    messages: [{role: user, content: "Go on from: {{ steps.ask.content }}"}]
"""


def answers_flow(make_flow, options: str = ""):
    return make_flow(FLOW.replace("OPTIONS\n", options + "\n" if options else ""))


def run(make_flow, chat_server, reply: Reply, options: str = "", on_event=None):
    flow = answers_flow(make_flow, options)
    chat_server.enqueue(reply)
    return Engine(OpenAITransport(base_url=chat_server.base_url), on_event=on_event).run(flow)


def test_the_spec_built_answers_are_valid_under_the_spec():
    assert response_errors(FILTERED) == []
    assert [e for c in FILTERED_STREAM + SPOKEN_STREAM for e in chunk_errors(c)] == []


@pytest.mark.server
@pytest.mark.parametrize("reply", [Reply(body=FILTERED), Reply(body=sse(FILTERED_STREAM))], ids=["json", "stream"])
def test_a_content_filter_stop_fails_the_step_and_the_next_never_runs(reply, make_flow, chat_server):
    streamed = isinstance(reply.body, str)
    record = run(make_flow, chat_server, reply, "    stream: true" if streamed else "")
    assert record.status == "failed" and isinstance(record.exception, ContentFilterError)
    assert record.error["type"] == "ContentFilterError" and record.error["step"] == "ask"
    assert "content filter stopped the answer (finish_reason: content_filter)" in record.error["message"]
    assert [s.id for s in record.steps] == ["ask"] and len(chat_server.requests) == 1
    (round_,) = record.steps[0].rounds
    assert round_.finish_reason == "content_filter"
    if streamed:  # what was written before the filter stopped it is kept, and said to be
        assert round_.content == "Here is how" and "the 11 characters written before it" in record.error["message"]


@pytest.mark.server
def test_a_streamed_spoken_answer_is_its_transcript_shown_as_it_comes(make_flow, chat_server):
    seen: list[str] = []
    record = run(make_flow, chat_server, Reply(body=sse(SPOKEN_STREAM)), "    stream: true",
                 on_event=lambda e: seen.append(e.text) if e.kind == "delta" and e.step == "ask" else None)
    assert record.status == "succeeded", record.error
    assert record.steps[0].content == "Hello there!" and seen == ["Hello", " there!"]
    (round_,) = record.steps[0].rounds
    assert round_.audio == {"id": AUDIO_ID, "expires_at": 1766088043, "transcript": "Hello there!",
                            "data_omitted_chars": len("".join(PIECES))}
    assert PIECES[1] not in json.dumps(record.to_dict())
    # The next step got the transcript as the answer.
    assert chat_server.requests[1].body["messages"][0]["content"] == "Go on from: Hello there!"


@pytest.mark.server
def test_an_empty_answer_is_never_handed_to_the_next_step(make_flow, chat_server):
    record = run(make_flow, chat_server, faults.completion(""))  # content "", finish_reason stop
    assert record.status == "failed" and isinstance(record.exception, EmptyAnswerError)
    assert record.error["message"].startswith("the answer is empty (finish_reason: stop)")
    assert len(chat_server.requests) == 1 and record.outputs == {}


def completion(message: dict[str, Any], finish: str | None = "stop", usage: dict[str, Any] | None = None):
    return parse_completion({"choices": [{"message": {"role": "assistant", **message}, "finish_reason": finish}],
                             "usage": usage or USAGE})


@pytest.mark.parametrize("message, finish, options, error, expected", [
    ({"content": None, "refusal": "No."}, "stop", "", RefusalError, "the model refused: No.\n  hint: "),
    ({"content": ""}, "length", "    max_completion_tokens: 9", EmptyAnswerError,
     "it was cut at the token limit before any text (finish_reason: length, max_completion_tokens: 9)"),
    ({"content": "Half"}, "length", "    on_length: fail", TruncatedAnswerError,
     "no max_tokens or max_completion_tokens is set, so the model's own output limit cut it"),
    ({"content": " \n"}, "stop", "", EmptyAnswerError, "the answer is empty (finish_reason: stop)"),
    ({"content": "Half", "refusal": None}, "content_filter", "", ContentFilterError, "the 4 characters written"),
])
def test_settle_says_why_an_answer_cannot_be_passed_on(make_flow, message, finish, options, error, expected):
    flow = answers_flow(make_flow, options)
    with pytest.raises(error) as raised:
        settle(completion(message, finish), flow, flow.steps[0])
    assert expected in str(raised.value)


def test_settle_passes_an_answer_on_with_what_goes_with_it(make_flow):
    flow = answers_flow(make_flow, "    on_refusal: output\n    max_tokens: 5")
    step = flow.steps[0]
    refused = settle(completion({"content": None, "refusal": "No."}), flow, step)
    assert (refused.content, refused.refused, refused.warning) == ("No.", True, None)
    cut = settle(completion({"content": "One two"}, "length"), flow, step)
    assert cut.content == "One two" and cut.warning is not None and "max_tokens: 5" in cut.warning
    plain = settle(completion({"content": "Done."}, None), flow, step)  # a stream may end with no finish_reason
    assert (plain.content, plain.warning) == ("Done.", None)


def test_the_token_limit_is_the_one_the_request_carries(make_flow):
    flow = make_flow("""\
        name: limits
        model: m
        defaults: {max_tokens: 100}
        steps:
          - id: a
            messages: [{role: user, content: x}]
          - id: b
            max_completion_tokens: 20
            messages: [{role: user, content: x}]
          - id: c
            extra_body: {max_tokens: 7}
            messages: [{role: user, content: x}]
        """)
    assert [token_limit(flow, s) for s in flow.steps] == [("max_tokens", 100), ("max_completion_tokens", 20),
                                                          ("max_tokens", 7)]


def test_the_audio_note_keeps_no_data():
    assert audio_note(None) is None
    assert audio_note({"id": "a", "data": "QUJD", "transcript": None}) == {"id": "a", "data_omitted_chars": 4}


@pytest.mark.parametrize("seed", range(3))
def test_any_answer_that_parses_is_passed_on_or_refused_with_an_answer_error(make_flow, seed):
    import random

    from flowrunner import AnswerError, APIError, ResponseError
    from test_fuzz import mangle, real_bodies

    rng = random.Random(seed)
    bodies = real_bodies() + [FILTERED]
    flows = [answers_flow(make_flow, options) for options in ("", "    on_refusal: output\n    on_length: fail")]
    for _ in range(1500):
        try:
            parsed = parse_completion(mangle(rng.choice(bodies), rng))
        except (ResponseError, APIError):
            continue
        for flow in flows:
            try:
                answer = settle(parsed, flow, flow.steps[0])
            except AnswerError as exc:
                assert str(exc).strip()
                continue
            assert isinstance(answer.content, str) and answer.content.strip()
        note = audio_note(parsed.audio)
        assert note is None or isinstance(note["data_omitted_chars"], int)
