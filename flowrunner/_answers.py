"""A model's final answer, judged: text a step may pass on, or why there is none.

A well-formed 200 can still hold no answer to pass on: the model refused (`message.refusal`), the
provider's filter stopped it (`finish_reason: content_filter`), or the text is empty (a reasoning
model that spent every token thinking). A spoken answer (`message.audio`) is its transcript. A cut
answer (`finish_reason: length`) is text, but incomplete: a warning, or a failure if the step says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._exceptions import ContentFilterError, EmptyAnswerError, RefusalError, TruncatedAnswerError
from ._model import Flow, Step
from ._transport import Completion

TOKEN_LIMITS = ("max_completion_tokens", "max_tokens")
"""The request options that cap an answer's tokens, in the order a server heeds them."""


@dataclass(frozen=True)
class Answer:
    """What a step may pass on: the text, a warning to show with it, and whether it is a refusal
    taken as the answer (`on_refusal: output`), which no response_format check should see."""

    content: str
    warning: str | None = None
    refused: bool = False


def settle(completion: Completion, flow: Flow, step: Step) -> Answer:
    """The final answer of `step`, or the AnswerError that says why there is none to pass on (the run
    record names the step, so the messages do not)."""
    if completion.refusal:
        if step.on_refusal == "output":
            return Answer(completion.refusal, refused=True)
        raise RefusalError(f"the model refused: {completion.refusal}\n  hint: change the request, or set "
                           "on_refusal: output on the step to take the refusal as its answer", completion.refusal)
    text = completion.content
    if text is None and completion.audio is not None:
        text = completion.audio.get("transcript")  # a spoken answer: content is null, the transcript is the text
    text = text or ""
    if completion.finish_reason == "content_filter":
        kept = f"; the {len(text):,} characters written before it are in the run record" if text else ""
        raise ContentFilterError(f"the provider's content filter stopped the answer (finish_reason: "
                                 f"content_filter){kept}\n  hint: change the messages; the provider's filter "
                                 "judged them or the answer")
    limit = token_limit(flow, step)
    if not text.strip():
        raise EmptyAnswerError(_empty(completion, limit))
    if completion.finish_reason == "length":
        cut = f"the answer was cut at the token limit ({_reason('length', limit)})"
        if step.on_length == "fail":
            raise TruncatedAnswerError(f"{cut} (on_length: fail)\n  hint: {_raise(limit)}")
        return Answer(text, warning=f"{cut}: it is incomplete\n  hint: {_raise(limit)}, or set on_length: fail "
                                    "to fail the step instead")
    return Answer(text)


def cut_structured(flow: Flow, step: Step, problem: str) -> TruncatedAnswerError:
    """The error for a response_format answer that is broken because it was cut: a repair would be cut too."""
    limit = token_limit(flow, step)
    return TruncatedAnswerError(f"the answer was cut at the token limit ({_reason('length', limit)}), "
                                f"so it is not what the response_format asks for ({problem})\n  hint: {_raise(limit)}; "
                                "asking again for a repair would be cut the same way")


def token_limit(flow: Flow, step: Step) -> tuple[str, Any] | None:
    """The token cap the step's requests carry (`max_tokens: 50`), as the engine builds them; None if none."""
    options = {**flow.defaults, **step.options, **step.extra_body}
    return next(((name, options[name]) for name in TOKEN_LIMITS if options.get(name) is not None), None)


def audio_note(audio: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the record keeps of a spoken answer: its id, expiry and transcript, and how long its data was."""
    if audio is None:
        return None
    note = {key: audio[key] for key in ("id", "expires_at", "transcript") if audio.get(key) is not None}
    data = audio.get("data")
    note["data_omitted_chars"] = len(data) if isinstance(data, str) else 0
    return note


def _empty(completion: Completion, limit: tuple[str, Any] | None) -> str:
    reason = completion.finish_reason
    details = (completion.usage or {}).get("completion_tokens_details")
    spent = (completion.usage or {}).get("completion_tokens")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if isinstance(spent, int) and spent > 0 and reasoning == spent:
        hint = (f"raise {limit[0]} ({limit[1]} now), or lower reasoning_effort" if limit
                else "lower reasoning_effort, or ask for less")
        return (f"the answer is empty: the model spent all {spent} completion tokens reasoning "
                f"({_reason(reason, limit)})\n  hint: {hint}")
    if reason == "length":
        return f"the answer is empty: it was cut at the token limit before any text ({_reason(reason, limit)})\n" \
               f"  hint: {_raise(limit)}"
    return (f"the answer is empty (finish_reason: {reason}): the model wrote no text, and an empty answer is "
            "never passed on as one\n  hint: check the messages; with a server other than OpenAI's, check its logs")


def _reason(reason: str | None, limit: tuple[str, Any] | None) -> str:
    return f"finish_reason: {reason}" + (f", {limit[0]}: {limit[1]}" if limit else "")


def _raise(limit: tuple[str, Any] | None) -> str:
    if limit:
        return f"raise {limit[0]} ({limit[1]} now)"
    return ("no max_tokens or max_completion_tokens is set, so the model's own output limit cut it: ask for a "
            "shorter answer")
