"""A run record as a tree of spans, named and attributed as the OpenTelemetry GenAI conventions say.

Pure data, no OpenTelemetry import: `plan(record, flow, ...)` returns `SpanPlan`s that `_otlp` emits.
The spans are built after the run, from the record, with the times the record holds:

    invoke_workflow {flow}        INTERNAL  the run
      invoke_agent {step id}      INTERNAL  one per step (a step is an agent: a model with tools, in a loop)
        chat {model}              CLIENT    one per request (a round), retries and rate-limit waits as events
        execute_tool {function}   INTERNAL  one per function call, a sibling after the chat span that asked
                                            for it (the request is over when the function runs)

Names and attributes follow the GenAI semantic conventions (`gen_ai.*`, development status):
the workflow span of semantic-conventions v1.41 (`gen_ai.workflow.name`), the agent, inference
and execute-tool spans. What the conventions have no name for is under `flowrunner.*`: the cost in
US dollars (`flowrunner.cost.usd`), the time waited for the rate limiter and for retries.

A record without times (older records; parts that never started) still makes a tree: a part with
no start starts where its parent does, one with no duration lasts no time.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence, TypeGuard
from urllib.parse import urlsplit

from .._secrets import redact

if TYPE_CHECKING:
    from .._model import Flow, Step
    from .._record import AttemptRecord, CallRecord, RoundRecord, RunRecord, StepRecord

Kind = Literal["internal", "client"]
AttributeValue = str | bool | int | float | Sequence[str]

NOTABLE_WAIT = 0.001
"""Seconds of waiting worth an event: an unpaced request's turn from the rate limiter takes microseconds."""
CONTENT_LIMIT = 32_768
"""Characters of captured content per attribute: a function's result can run to megabytes."""

# Where the request goes -> gen_ai.provider.name (the conventions' well-known values). Any other
# server speaks OpenAI's API (vLLM, Ollama, llama.cpp, the test server): `openai` names that flavour.
PROVIDERS = {
    "api.openai.com": "openai", "api.groq.com": "groq", "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai", "api.x.ai": "x_ai", "api.perplexity.ai": "perplexity",
    "api.moonshot.ai": "moonshot_ai", "generativelanguage.googleapis.com": "gcp.gemini",
}
OPENAI_URL = "https://api.openai.com/v1"

# A step's request options -> gen_ai.request.* (type checked: a flow's YAML may hold anything there).
_FLOAT_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "presence_penalty": "presence_penalty",
                  "frequency_penalty": "frequency_penalty"}
_INT_OPTIONS = {"max_tokens": "max_tokens", "max_completion_tokens": "max_tokens", "seed": "seed"}


@dataclass
class EventPlan:
    name: str
    time: float
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass
class SpanPlan:
    """One span to emit: times in unix seconds; `error` (a description) makes its status ERROR."""

    name: str
    kind: Kind
    start: float
    end: float
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    events: list[EventPlan] = field(default_factory=list)
    error: str | None = None
    children: list[SpanPlan] = field(default_factory=list)

    def walk(self) -> list[SpanPlan]:
        """This span and every one under it, parents first."""
        found = [self]
        for child in self.children:
            found += child.walk()
        return found


def plan(record: RunRecord, flow: Flow | None, *, base_url: str | None, capture_content: bool,
         now: float) -> SpanPlan:
    """The span tree of one run. `base_url`: where its requests went (None: not known); `now` stands in
    for a run with no start."""
    start = _number(getattr(record, "started", None), now)
    root = SpanPlan(f"invoke_workflow {record.flow}", "internal", start,
                    start + _number(getattr(record, "duration", None), 0.0))
    root.attributes.update({"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": record.flow,
                            "flowrunner.flow.file": record.file, "flowrunner.run.status": record.status})
    _cost(root, record)
    if record.error:
        root.error = redact(str(record.error.get("message") or record.error.get("type") or "failed"))
        root.attributes["error.type"] = str(record.error.get("type") or "_OTHER")
    if capture_content:
        _content(root, "flowrunner.run.inputs", record.inputs)
        if record.status == "succeeded":
            _content(root, "flowrunner.run.outputs", record.outputs)
    server = _server(base_url)
    for step_record in record.steps:
        step = next((s for s in flow.steps if s.id == step_record.id), None) if flow is not None else None
        failed_here = bool(record.error) and record.error.get("step") == step_record.id  # type: ignore[union-attr]
        root.children.append(_step(step_record, step, flow, root.start, server, capture_content,
                                   record.error if failed_here else None))
    _cover(root)
    return root


def _step(record: StepRecord, step: Step | None, flow: Flow | None, parent_start: float,
          server: dict[str, AttributeValue], capture_content: bool, error: dict[str, Any] | None) -> SpanPlan:
    start = _number(getattr(record, "started", None), parent_start)
    span = SpanPlan(f"invoke_agent {record.id}", "internal", start,
                    start + _number(getattr(record, "duration", None), 0.0))
    span.attributes.update({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": record.id,
                            "gen_ai.request.model": record.model, **server})
    _usage(span, record.usage)
    _cost(span, record)
    if record.status == "failed":
        span.error = redact(str(error.get("message"))) if error else "the step failed"
        span.attributes["error.type"] = str(error.get("type")) if error else "_OTHER"
    settings = _settings(flow, step)
    for round_record in record.rounds:
        chat = _round(round_record, record.model, span.start, server, settings, capture_content)
        span.children.append(chat)
        for call in round_record.calls:
            span.children.append(_call(call, flow, chat.end, capture_content))
    return span


def _round(record: RoundRecord, model: str, parent_start: float, server: dict[str, AttributeValue],
           settings: dict[str, AttributeValue], capture_content: bool) -> SpanPlan:
    start = _number(getattr(record, "started", None), parent_start)
    span = SpanPlan(f"chat {model}", "client", start, _round_end(record, start))
    span.attributes.update({"gen_ai.operation.name": "chat", "gen_ai.request.model": model, **server, **settings})
    if record.response_id:
        span.attributes["gen_ai.response.id"] = record.response_id
    if record.model:
        span.attributes["gen_ai.response.model"] = record.model
    if record.finish_reason:
        span.attributes["gen_ai.response.finish_reasons"] = [record.finish_reason]
    _usage(span, record.usage)
    _cost(span, record)
    for name in ("waited_rate_limit", "waited_retry"):
        waited = _time(record, name)
        if waited is not None and waited >= NOTABLE_WAIT:
            span.attributes[f"flowrunner.{name}"] = waited
    _waits(span, record)
    last = record.attempts[-1] if record.attempts else None
    if last is not None and last.error is not None and record.response_id is None:
        span.attributes["error.type"] = _attempt_error(last)
        span.error = redact(last.message or last.error)
        if last.status:
            span.attributes["http.response.status_code"] = last.status
    if record.invalid_output:
        span.attributes["flowrunner.invalid_output"] = redact(record.invalid_output)
    if capture_content:
        _input_messages(span, record)
    if capture_content and (record.content is not None or record.calls or record.refusal):
        parts: list[dict[str, Any]] = []
        if record.content is not None:
            parts.append({"type": "text", "content": record.content})
        if record.refusal:
            parts.append({"type": "refusal", "content": record.refusal})
        for call in record.calls:
            parts.append({"type": "tool_call", "id": call.id, "name": call.name,
                          "arguments": call.arguments if call.arguments is not None else call.raw_arguments})
        _content(span, "gen_ai.output.messages",
                 [{"role": "assistant", "parts": parts, "finish_reason": record.finish_reason or "stop"}])
    return span


def _input_messages(span: SpanPlan, record: RoundRecord) -> None:
    """The request's messages, in the conventions' shape: system messages as `gen_ai.system_instructions`,
    the rest as `gen_ai.input.messages` (text, tool calls, tool results)."""
    request = getattr(record, "request", None)
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list):
        return
    instructions: list[dict[str, Any]] = []
    inputs: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        parts = _text_parts(message.get("content"))
        if role in ("system", "developer"):
            instructions.extend(parts)
            continue
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                              "arguments": function.get("arguments")})
        if role in ("tool", "function"):
            parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                      "response": message.get("content")}]
        inputs.append({"role": role, "parts": parts})
    if instructions:
        _content(span, "gen_ai.system_instructions", instructions)
    _content(span, "gen_ai.input.messages", inputs)


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):  # content parts: text kept, others named by their type
        return [{"type": "text", "content": part.get("text")} if part.get("type") == "text"
                else {"type": str(part.get("type"))} for part in content if isinstance(part, dict)]
    return []


def _waits(span: SpanPlan, record: RoundRecord) -> None:
    """The rate limiter's wait (all attempts' together, at the round's start), each retried attempt (when
    its failure came), and a stream's first token, as span events."""
    waited = _time(record, "waited_rate_limit")
    if waited is not None and waited >= NOTABLE_WAIT:
        span.events.append(EventPlan("flowrunner.rate_limit.wait", span.start, {"flowrunner.wait.seconds": waited}))
    for number, attempt in enumerate(record.attempts, 1):
        if attempt.error is None or (attempt is record.attempts[-1] and record.response_id is None):
            continue  # the answer, or the failure the span itself reports
        started = getattr(attempt, "started", None)
        when = _number(started, span.start) + _number(getattr(attempt, "duration", None), 0.0)
        attributes: dict[str, AttributeValue] = {"flowrunner.attempt": number, "error.type": _attempt_error(attempt),
                                                 "flowrunner.retry.delay": float(attempt.slept)}
        if attempt.status:
            attributes["http.response.status_code"] = attempt.status
        if attempt.message:
            attributes["flowrunner.retry.reason"] = redact(attempt.message)[:1000]
        span.events.append(EventPlan("flowrunner.retry", min(max(when, span.start), span.end), attributes))
    sent, ttft = _time(record, "sent"), _time(record, "ttft")
    if sent is not None and ttft is not None:
        span.events.append(EventPlan("flowrunner.first_token", min(sent + ttft, span.end)))


def _call(record: CallRecord, flow: Flow | None, after: float, capture_content: bool) -> SpanPlan:
    start = _number(getattr(record, "started", None), after)
    span = SpanPlan(f"execute_tool {record.name}", "internal", start,
                    start + _number(getattr(record, "duration", None), 0.0))
    span.attributes.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": record.name,
                            "gen_ai.tool.type": "function"})
    if record.id:
        span.attributes["gen_ai.tool.call.id"] = record.id
    spec = flow.functions.get(record.name) if flow is not None else None
    if spec is not None and spec.description:
        span.attributes["gen_ai.tool.description"] = spec.description
    if record.error:
        span.error = redact(record.error)
        span.attributes["error.type"] = _call_error(record.error)
    if capture_content:
        _content(span, "gen_ai.tool.call.arguments",
                 record.arguments if record.arguments is not None else record.raw_arguments)
        if not record.error:
            _content(span, "gen_ai.tool.call.result", record.result)
    return span


def _round_end(record: RoundRecord, start: float) -> float:
    sent, latency = _time(record, "sent"), _time(record, "latency")
    if sent is not None and latency is not None:
        return max(start, sent + latency)
    ends = [_number(getattr(a, "started", None), start) + _number(getattr(a, "duration", None), 0.0)
            for a in record.attempts]
    return max([start, *ends])


def _cover(span: SpanPlan) -> None:
    """A parent ends no earlier than its children (a record's parts are timed on their own)."""
    for child in span.children:
        _cover(child)
        span.end = max(span.end, child.end)


def _settings(flow: Flow | None, step: Step | None) -> dict[str, AttributeValue]:
    """The request options the conventions name, from the flow's defaults and the step's own."""
    if flow is None:
        return {}
    options = {**flow.defaults, **(step.options if step is not None else {})}
    found: dict[str, AttributeValue] = {}
    for key, name in _FLOAT_OPTIONS.items():
        if _is_number(options.get(key)):
            found[f"gen_ai.request.{name}"] = float(options[key])
    for key, name in _INT_OPTIONS.items():
        value = options.get(key)
        if _is_int64(value):
            found[f"gen_ai.request.{name}"] = value
    stop = options.get("stop")
    if isinstance(stop, str):
        found["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        found["gen_ai.request.stop_sequences"] = list(stop)
    response_format = options.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("type"), str):
        found["gen_ai.output.type"] = "json" if response_format["type"] in ("json_object", "json_schema") else "text"
    if isinstance(options.get("service_tier"), str):
        found["openai.request.service_tier"] = options["service_tier"]
    return found


def _server(base_url: str | None) -> dict[str, AttributeValue]:
    """gen_ai.provider.name, server.address and server.port for requests to `base_url` (None: not known,
    as in a replay: the API is OpenAI's)."""
    if base_url is None:
        return {"gen_ai.provider.name": "openai"}
    try:
        parts = urlsplit(base_url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return {"gen_ai.provider.name": "openai"}
    provider = PROVIDERS.get(host) or ("azure.ai.openai" if host.endswith(".openai.azure.com") else "openai")
    found: dict[str, AttributeValue] = {"gen_ai.provider.name": provider}
    if host:
        found["server.address"] = host
        found["server.port"] = port or (443 if parts.scheme == "https" else 80)
    return found


def _usage(span: SpanPlan, usage: dict[str, Any] | None) -> None:
    usage = usage or {}
    for key, name in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
        value = usage.get(key)
        if _is_int64(value):
            span.attributes[f"gen_ai.usage.{name}"] = value
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if _is_int64(cached):
        span.attributes["gen_ai.usage.cache_read.input_tokens"] = cached


def _cost(span: SpanPlan, record: Any) -> None:
    cost = _time(record, "cost")
    if cost is not None:
        span.attributes["flowrunner.cost.usd"] = cost


def _content(span: SpanPlan, name: str, value: Any) -> None:
    """Captured content as a JSON string (a string as it is), redacted, clipped to CONTENT_LIMIT."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = redact(text)  # before clipping, which could leave a secret's start unredacted
    if len(text) > CONTENT_LIMIT:
        text = f"{text[:CONTENT_LIMIT]}... ({len(text):,} characters)"
    span.attributes[name] = text


def _attempt_error(attempt: AttemptRecord) -> str:
    """error.type of a failed request: its HTTP status when there was an answer, else the error's class."""
    return str(attempt.status) if attempt.status else (attempt.error or "_OTHER")


def _call_error(error: str) -> str:
    """error.type of a function call (the list README gives)."""
    if error.startswith("invalid arguments"):
        return "invalid_arguments"
    if error.startswith("there is no function"):
        return "unknown_function"
    if error.startswith("not run:"):
        return "not_run"
    if "did not finish within its timeout" in error:
        return "timeout"
    raised = re.search(r" raised (\w+):", error)  # the exception's class, as the conventions suggest
    return raised.group(1) if raised else "function_error"


def _is_int64(value: Any) -> TypeGuard[int]:
    """An int OTLP can carry (a server may send any number of digits; OTLP's integers are 64-bit)."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _time(record: Any, name: str) -> float | None:
    """A record's timing (or cost) field: None when missing, None, or not a finite number."""
    value: Any = getattr(record, name, None)
    return float(value) if _is_number(value) else None


def _number(value: Any, default: float) -> float:
    return float(value) if _is_number(value) else default
