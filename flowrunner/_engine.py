"""The engine: render each step's messages, ask the model, run the functions it calls, repeat.

It never prints and never exits: it returns a RunRecord (failed runs included, with everything
that happened up to the failure) and reports progress through an optional `on_event` callback.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ._answers import Answer, audio_note, cut_structured, settle
from ._exceptions import APIError, ConfigError, FunctionError, MaxRoundsError, OutputError, RunError
from ._functions import call_function, parse_arguments, refuse_call, to_content, validate_arguments
from ._inputs import resolve_inputs
from ._json import JSONError, loads
from ._model import Flow, FunctionSpec, Step
from ._output import output_problem, repair_message, unfence
from ._pricing import Prices, price_run, price_step
from ._ratelimit import RateLimit, RateLimiter, estimate_tokens, shared_limiter
from ._replay import UNPACED, replay_sleep, replaying
from ._record import AttemptRecord, CallRecord, RoundRecord, RunRecord, StepRecord, add_usage
from ._retry import call_with_retry, server_delay
from ._secrets import redact, redact_in_place
from ._templating import missing
from ._timing import RoundClock, Stopwatch
from ._transport import Completion, ToolCall, Transport

_MAX_PARALLEL_CALLS = 8


@dataclass(frozen=True)
class Event:
    """Progress, for whoever wants to show it: `request` before each round, `sent` as each attempt's
    request leaves (a round retried three times sends three; one refused by the rate limiter, none),
    `call` after each function (of the calls past max_calls, which are not run, only the first),
    `retry` after a failed attempt that will be retried (its `attempt` says how long the wait is), and
    for a streamed step `delta` as each piece arrives (`text`; with `tool`, a piece of that call's arguments)."""

    kind: str
    step: str
    round: int
    call: CallRecord | None = None
    attempt: AttemptRecord | None = None
    text: str | None = None
    tool: str | None = None


EventHandler = Callable[[Event], None]
Approver = Callable[[FunctionSpec, dict[str, Any]], bool]
"""Asked before each call of a function (or MCP tool) with `approve: ask`: True runs it, False refuses it."""


class Engine:
    """Runs flows through a transport. One engine can run many flows, one after another or in threads."""

    def __init__(self, transport: Transport, *, model: str | None = None, on_event: EventHandler | None = None,
                 rate_limit: RateLimit | None = None, limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 approve: Approver | None = None, prices: Prices | None = None,
                 batch_prices: bool = False):
        self.transport = transport
        self.approve = approve
        """Without one, calls that need approval are refused (and the model told)."""
        self.model = model  # overrides every step's model (the CLI's --model)
        self.on_event = on_event
        self.rate_limit = rate_limit or RateLimit()
        """Limits that override the flow's (the CLI's --rate-limit)."""
        self.limiter = limiter or shared_limiter(getattr(transport, "scope", "default"))
        """Shared by every request to the same server in the process, so concurrent runs share one budget."""
        self.sleep = sleep
        self.clock = clock  # what retry.max_elapsed is measured on (the Batch API's runs: only the waits)
        self.prices = dict(prices or {})
        """Prices by model that beat the flow's and the table's (the CLI's --price)."""
        self.batch_prices = batch_prices
        """Answers come through the Batch API (`--via batch-api`): priced at its half price."""

    def run(self, flow: Flow, inputs: Mapping[str, Any] | None = None, *, inputs_as_text: bool = False) -> RunRecord:
        """Run every step in order and render the outputs; a runtime failure ends in a failed record."""
        values = resolve_inputs(flow, inputs or {}, from_text=inputs_as_text)
        self.check_models(flow)
        warm = getattr(self.transport, "warm", None)
        if warm is not None:
            warm()  # the SDK is ready before the first request's turn comes (see OpenAITransport.warm)
        # The run's clock starts after that: importing the SDK (a second or more, once a process) is not the run's time.
        run_watch = Stopwatch()
        record = RunRecord(flow=flow.name, file=str(flow.path), inputs=values)
        context: dict[str, Any] = {"inputs": values, "steps": {}}
        tools = ExitStack()  # the MCP servers the run uses, let go of however it ends
        try:
            flow = _with_mcp(flow, tools)
            for step in flow.steps:
                step_record, step_watch = StepRecord(id=step.id, model=self._model(flow, step)), Stopwatch()
                record.steps.append(step_record)
                try:
                    messages = [render_message(m, context) for m in step.messages]
                    content = self._converse(flow, step, messages, step_record)
                except RunError:
                    step_record.status = "failed"
                    raise
                finally:
                    add_usage(record.usage, step_record.usage)
                    step_watch.stamp(step_record)
                context["steps"][step.id] = step_result(step.id, content)
            record.outputs = {name: t.render(context) for name, t in flow.outputs.items()}
        except RunError as exc:
            record.status = "failed"
            exc.args = (redact(str(exc)),)
            record.exception = exc
            failed_step = record.steps[-1].id if record.steps and record.steps[-1].status == "failed" else None
            record.error = {"type": type(exc).__name__, "message": str(exc), "step": failed_step}
        finally:
            tools.close()
        run_watch.stamp(record)
        price_run(record, {**flow.prices, **self.prices}, batch=self.batch_prices)  # after: the price table's first load is not the run's time
        redact_in_place(record)
        return record

    def chat(self, flow: Flow, inputs: Mapping[str, Any] | None = None, *, inputs_as_text: bool = False,
             step_id: str | None = None) -> ChatSession:
        """A conversation that starts from one step's messages (the first step unless named)."""
        values = resolve_inputs(flow, inputs or {}, from_text=inputs_as_text)
        self.check_models(flow)
        step = flow.steps[0]
        if step_id is not None:
            matches = [s for s in flow.steps if s.id == step_id]
            if not matches:
                raise ConfigError(f"flow {flow.name!r} has no step {step_id!r} "
                                  f"(its steps: {', '.join(s.id for s in flow.steps)})")
            step = matches[0]
        context = {"inputs": values, "steps": {}}
        history = [render_message(m, context) for m in step.messages]
        tools = ExitStack()
        flow = _with_mcp(flow, tools)
        session = ChatSession(self, flow, step, history)
        session.tools = tools
        return session

    def _model(self, flow: Flow, step: Step) -> str:
        return self.model or step.model or flow.model or ""

    def check_models(self, flow: Flow) -> None:
        """ConfigError unless every step has a model (the flow's, the step's, or --model)."""
        for step in flow.steps:
            if not self._model(flow, step):
                raise ConfigError(f"step {step.id!r} has no model: set `model:` in the flow or the step, "
                                  "or pass --model")

    def _request(self, flow: Flow, step: Step, messages: list[dict[str, Any]], *,
                 with_functions: bool = True) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self._model(flow, step), "messages": messages}
        request.update(flow.defaults)
        request.update(step.options)
        if not with_functions:
            for key in ("tool_choice", "parallel_tool_calls"):
                request.pop(key, None)
        elif step.functions:
            specs = [flow.functions[name] for name in step.functions]
            if flow.api == "functions":
                request["functions"] = [s.legacy() for s in specs]
                _to_legacy_choice(request)
            else:
                request["tools"] = [s.tool() for s in specs]
        request.update(step.extra_body)
        if request.get("stream") and "stream_options" not in request:
            request["stream_options"] = {"include_usage": True}  # else a stream reports no usage
        return request

    def _converse(self, flow: Flow, step: Step, messages: list[dict[str, Any]], record: StepRecord) -> str:
        """The step's answer: function-call rounds until the model answers, then, with a
        `response_format`, the answer checked and sent back for repair as the step allows."""
        response_format = step.options.get("response_format", flow.defaults.get("response_format"))
        for repairs in range(step.repair + 1):
            answer = self._answer(flow, step, messages, record)
            content = answer.content
            problem = None if answer.refused else output_problem(content, response_format)
            if problem is None:
                if answer.warning:
                    record.warnings.append(answer.warning)
                return content
            if record.rounds[-1].finish_reason == "length":
                raise cut_structured(flow, step, problem)
            record.rounds[-1].invalid_output = problem
            messages.append({"role": "assistant", "content": content})
            messages.append(repair_message(problem))
        raise OutputError(f"step {step.id!r}: {problem}, after {step.repair} repair request"
                          f"{'' if step.repair == 1 else 's'}\n  hint: make the schema or the prompt clearer, "
                          "or raise the step's repair")

    def _answer(self, flow: Flow, step: Step, messages: list[dict[str, Any]], record: StepRecord) -> Answer:
        """Rounds of request and function calls until the model answers; `messages` grows in place."""
        first = len(record.rounds) + 1
        for number in range(first, first + step.max_rounds):
            completion = self._round(flow, step, messages, record, number)
            calls = list(completion.tool_calls) or ([completion.function_call] if completion.function_call else [])
            if not calls:
                return self._settle(completion, flow, step, record)
            messages.append(completion.message)
            results = self._run_calls(flow, step, calls, record.rounds[-1], number)
            for call, text in zip(calls, results):
                if completion.function_call is not None:
                    messages.append({"role": "function", "name": call.name, "content": text})
                else:
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        if step.on_max_rounds == "answer":
            # One last request without functions: the model has to answer with what it has.
            completion = self._round(flow, step, messages, record, first + step.max_rounds, with_functions=False)
            if not (completion.tool_calls or completion.function_call):
                return self._settle(completion, flow, step, record)
        raise MaxRoundsError(f"step {step.id!r}: the model was still calling functions after max_rounds="
                             f"{step.max_rounds} rounds\n  hint: raise max_rounds on the step, set on_max_rounds: "
                             "answer, or make the functions' answers settle the question")

    @staticmethod
    def _settle(completion: Completion, flow: Flow, step: Step, record: StepRecord) -> Answer:
        """The model's final answer, or the AnswerError saying why it has none to pass on (refused, filtered, empty)."""
        answer = settle(completion, flow, step)
        record.content = answer.content
        return answer

    def _round(self, flow: Flow, step: Step, messages: list[dict[str, Any]], record: StepRecord, number: int,
               *, with_functions: bool = True) -> Completion:
        """One request (retried as the step's policy says, paced by the limiter), recorded as a round."""
        self._emit(Event("request", step.id, number))
        request = self._request(flow, step, messages, with_functions=with_functions)
        # The record keeps the request as sent: its messages list grows in place after this round, so a copy.
        round_record = RoundRecord(response_id=None, model=None, finish_reason=None, content=None,
                                   request={**request, "messages": list(messages)})
        record.rounds.append(round_record)
        timer = RoundClock(round_record)
        estimate = estimate_tokens(request)
        limit = flow.rate_limit.merged(self.rate_limit)  # this run's limits; the limiter is the server's
        on_chunk = self._chunk_handler(step.id, number) if request.get("stream") and self.on_event else None

        def attempt() -> Completion:
            pacer = UNPACED if replaying() else self.limiter  # a replay sends nothing (see `_replay`)
            ticket = timer.acquire(pacer, estimate, limit, longest_wait=step.retry.max_elapsed)

            def departed() -> None:
                ticket.departed()
                self._emit(Event("sent", step.id, number))

            sent = _Once(departed)
            # When a request leaves matters to pacing and to whoever shows progress; for neither, the transport
            # is not asked to watch for it (that costs the HTTP client a call per event of every request).
            watch = sent if _paced(limit, self.limiter) or self.on_event else None
            try:
                completion = timer.exchange(self.transport.complete, request, on_chunk, watch)
            except APIError as exc:
                sent()  # answered, so sent, whether or not the transport said so
                ticket.finished(exc.headers, rate_limited=server_delay(exc) if exc.status == 429 else None)
                raise
            except BaseException:
                ticket.finished()
                raise
            sent()
            ticket.finished(completion.headers)
            ticket.settle(completion.usage)
            return completion

        def on_retry(attempt_record: AttemptRecord) -> None:
            timer.settle(round_record.attempts)
            self._emit(Event("retry", step.id, number, attempt=attempt_record))

        # Pacing at a limit, declared or stated by the server, a 429 is the pacing's slip (see
        # call_with_retry): one is sent again.
        try:
            completion = call_with_retry(attempt, step.retry, round_record.attempts, on_retry=on_retry,
                                         sleep=timer.sleep(replay_sleep if replaying() else self.sleep),
                                         clock=self.clock,
                                         slips=1 if _paced(limit, self.limiter) else 0)
        finally:
            timer.settle(round_record.attempts)
        round_record.response_id, round_record.model = completion.id, completion.model
        round_record.finish_reason, round_record.content = completion.finish_reason, completion.content
        round_record.usage = completion.usage
        round_record.refusal, round_record.audio = completion.refusal, audio_note(completion.audio)
        add_usage(record.usage, completion.usage)
        return completion

    def _chunk_handler(self, step_id: str, number: int) -> Callable[[dict[str, Any]], None]:
        """Turns stream chunks into `delta` events: content pieces, and argument pieces named by their call."""
        names: dict[Any, str] = {}

        def handle(chunk: dict[str, Any]) -> None:
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) and choice.get("index", 0) == 0 else None
                if not isinstance(delta, dict):
                    continue
                if isinstance(delta.get("content"), str) and delta["content"]:
                    self._emit(Event("delta", step_id, number, text=delta["content"]))
                spoken = delta.get("audio")  # a spoken answer's transcript is its text
                if isinstance(spoken, dict) and isinstance(spoken.get("transcript"), str) and spoken["transcript"]:
                    self._emit(Event("delta", step_id, number, text=spoken["transcript"]))
                parts = delta.get("tool_calls") or []
                if isinstance(delta.get("function_call"), dict):
                    parts = [{"index": "legacy", "function": delta["function_call"]}]
                for part in parts if isinstance(parts, list) else []:
                    function = part.get("function") if isinstance(part, dict) else None
                    if not isinstance(function, dict):
                        continue
                    key = part.get("index") if isinstance(part.get("index"), (int, str)) else 0
                    if isinstance(function.get("name"), str):
                        names[key] = names.get(key, "") + function["name"]
                    if isinstance(function.get("arguments"), str) and function["arguments"]:
                        self._emit(Event("delta", step_id, number, text=function["arguments"],
                                         tool=names.get(key) or "?"))

        return handle

    def _run_calls(self, flow: Flow, step: Step, calls: list[ToolCall], record: RoundRecord,
                   number: int) -> list[str]:
        """Run the round's calls (concurrently when there are several); the texts to send back, in order.
        Calls past the step's max_calls are not run, and each is answered saying so."""
        calls, refused = calls[:step.max_calls], calls[step.max_calls:]
        if len(calls) == 1:
            outcomes = [self._run_call(flow, step, calls[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(len(calls), _MAX_PARALLEL_CALLS)) as pool:
                outcomes = list(pool.map(lambda c: self._run_call(flow, step, c), calls))
        outcomes += [refuse_call(call, len(calls) + len(refused), step.max_calls) for call in refused]
        for index, (call_record, _, _) in enumerate(outcomes):
            record.calls.append(call_record)
            if index <= len(calls):  # of the calls not run, the first one's event (and error) stands for all
                self._emit(Event("call", step.id, number, call_record))
        for _, _, failure in outcomes:
            if failure is not None:
                raise failure
        return [text for _, text, _ in outcomes]

    def _run_call(self, flow: Flow, step: Step, call: ToolCall) -> tuple[CallRecord, str, RunError | None]:
        """One call, timed (see `_call`)."""
        watch = Stopwatch()
        outcome = self._call(flow, step, call)
        watch.stamp(outcome[0])
        return outcome

    def _call(self, flow: Flow, step: Step, call: ToolCall) -> tuple[CallRecord, str, RunError | None]:
        """One call. What went wrong goes back to the model as the result, or fails the run, as the
        function's `on_invalid_arguments` / `on_error` say; a function the step does not list is never run."""
        arguments, problem = parse_arguments(call.arguments)
        spec = flow.functions.get(call.name) if call.name in step.functions else None
        record = CallRecord(id=call.id, name=call.name, arguments=arguments,
                            raw_arguments=call.arguments if arguments is None else None,
                            server=spec.server if spec is not None else None)
        if spec is None:
            problem = f"there is no function {call.name!r}; the functions you can call are: {', '.join(step.functions)}"
        elif arguments is not None:
            problem = validate_arguments(arguments, spec.parameters)
        if problem:
            problem = f"invalid arguments for {call.name}: {problem}" if spec is not None else problem
            record.error = problem
            if spec is not None and spec.on_invalid_arguments == "fail":
                return record, "", FunctionError(f"step {step.id!r}: {problem} (on_invalid_arguments: fail)")
            return record, f"Error: {problem}. Correct the call and try again.", None
        assert spec is not None and spec.func is not None and arguments is not None
        if spec.approve and not (self.approve is not None and self.approve(spec, arguments)):
            record.error = ("not run: the user refused the call" if self.approve is not None
                            else "not run: the call needs approval (approve: ask) and there is no one to ask")
            return record, f"Error: {record.error[9:]}. Do not call it again; answer without it.", None
        try:
            result = call_function(call.name, spec.func, arguments, spec.timeout)
        except FunctionError as exc:
            record.error = str(exc)
            if spec.on_error == "fail":
                return record, "", exc
            return record, f"Error: {exc.reason}.", None
        content = to_content(result)
        # The record keeps JSON-ready data: the text itself, or the JSON the model was sent, parsed back.
        record.result = result if isinstance(result, str) else json.loads(content)
        return record, content, None

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)


class ChatSession:
    """A continuing conversation: each `send` adds a user message and returns the model's answer."""

    def __init__(self, engine: Engine, flow: Flow, step: Step, history: list[dict[str, Any]]):
        self.engine = engine
        self.flow = flow
        self.step = step
        self.history = history
        self.turns: list[StepRecord] = []
        self._start = len(history)
        self.tools = ExitStack()
        """The MCP servers the conversation uses: let go of by `close`."""

    def close(self) -> None:
        """Let go of the MCP servers (stopped unless another run uses them); the session cannot send after."""
        self.tools.close()

    def reset(self) -> None:
        """Back to the step's own messages: the conversation since is forgotten."""
        del self.history[self._start:]

    @property
    def awaiting_answer(self) -> bool:
        """True when the step's own messages end with a user message, which deserves an answer first."""
        return bool(self.history) and self.history[-1].get("role") == "user"

    def send(self, text: str | None) -> StepRecord:
        """One turn; on failure the history is left as it was before the turn, so the user can go on."""
        before = len(self.history)
        if text is not None:
            self.history.append({"role": "user", "content": text})
        turn, watch = StepRecord(id=self.step.id, model=self.engine._model(self.flow, self.step)), Stopwatch()
        self.turns.append(turn)
        try:
            content = self.engine._converse(self.flow, self.step, self.history, turn)
        except RunError:
            turn.status = "failed"
            del self.history[before:]
            raise
        finally:
            watch.stamp(turn)
            price_step(turn, {**self.flow.prices, **self.engine.prices}, batch=self.engine.batch_prices)
        self.history.append({"role": "assistant", "content": content})
        return turn


def _with_mcp(flow: Flow, tools: ExitStack) -> Flow:
    """The flow with its MCP servers' tools among its functions (see `flowrunner.mcp`), held by `tools`."""
    if not flow.mcp:
        return flow
    from .mcp import attach

    return attach(flow, tools)


def _paced(limit: RateLimit, limiter: RateLimiter) -> bool:
    """Whether requests are paced: at the run's declared limits, or at those the server stated."""
    stated = limiter.learned
    return bool(limit.rpm or limit.tpm or stated.rpm or stated.tpm)


class _Once:
    """A callback that acts on its first call only (a transport may report a departure more than once)."""

    def __init__(self, action: Callable[[], None]):
        self._action: Callable[[], None] | None = action

    def __call__(self) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()


def _to_legacy_choice(request: dict[str, Any]) -> None:
    """The legacy protocol says `function_call` where the tools one says `tool_choice`, and has no parallel calls."""
    request.pop("parallel_tool_calls", None)
    choice = request.pop("tool_choice", None)
    if isinstance(choice, dict):
        request["function_call"] = {"name": choice["function"]["name"]}
    elif choice in ("none", "auto"):
        request["function_call"] = choice
    # "required" has no legacy equivalent: the model is left to choose ("auto").


def render_message(message: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """A flow message as the API wants it, its content rendered on its own."""
    rendered: dict[str, Any] = {"role": message.role, "content": message.content.render(context)}
    if message.name:
        rendered["name"] = message.name
    return rendered


def step_result(step_id: str, content: str) -> dict[str, Any]:
    """What later templates see as `steps.<id>`: the content, and `.json` when the content is JSON."""
    try:
        parsed: Any = loads(unfence(content))
    except JSONError:
        parsed = missing(f"steps.{step_id}.json: the content of step {step_id!r} is not JSON "
                         f"(it starts {content[:60]!r})")
    return {"content": content, "json": parsed}
