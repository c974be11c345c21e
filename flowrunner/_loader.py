"""Loading a flow file into a `Flow`: YAML with positions, the schema, then whole-flow checks.

Each stage reports every problem it finds at once, located in the file; a later stage only runs on
what the earlier ones accepted, so the builder below can trust the shape of the data.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from jsonschema import Draft202012Validator

from ._durations import parse_duration
from ._exceptions import FlowValidationError, Problem
from ._functions import EntryPointError, check_signature, resolve_entry
from ._model import MISSING, Flow, FunctionSpec, InputSpec, Message, Step, TestCase
from ._pricing import Price
from ._ratelimit import RateLimit
from ._retry import Backoff, RetryPolicy
from ._schema import describe, error_problems, request_option_names, schema_problems, sort_problems
from ._templating import Template, compile_template, global_names
from ._yaml import MAX_BYTES, JsonPath, Positions, format_path, parse_yaml

STEP_ATTRIBUTES = ("content", "json")
"""What a template can read of an earlier step (`steps.<id>.content`); the engine's step_result builds them."""
_TEMPLATE_HINT = "templates can read inputs.<name> and steps.<id>.content / steps.<id>.json"


def load_flow(path: str | Path) -> Flow:
    """Read, parse and check a flow file; raise FlowValidationError listing every problem found."""
    path = Path(path)
    return load_flow_text(_read(path), str(path), path.parent)


def load_flow_text(text: str, filename: str = "<flow>", flow_dir: str | Path | None = None) -> Flow:
    """Load a flow from text; `filename` names it in locations, `flow_dir` is where its modules are."""
    data, positions = parse_yaml(text, filename)
    problems = schema_problems(data, positions, filename)
    if problems:
        raise FlowValidationError(problems)
    folder = Path(flow_dir) if flow_dir is not None else Path(filename).parent
    return _Builder(data, positions, Path(filename), folder).build()


def _read(path: Path) -> str:
    """The file's text, or one unlocated problem saying why it cannot be had."""
    name = str(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _unreadable(f"flow file not found: {name}", _missing_hint(path)) from None
    except IsADirectoryError:
        raise _unreadable(f"{name} is a directory, not a flow file", "give the path of a .yaml file") from None
    except PermissionError:
        raise _unreadable(f"cannot read {name}: permission denied", "check the file's permissions") from None
    except OSError as exc:
        raise _unreadable(f"cannot read {name}: {exc.strerror or exc}", None) from None
    if len(raw) > MAX_BYTES:
        raise _unreadable(f"{name} is larger than {MAX_BYTES // 1024 // 1024} MB, the limit for a flow file",
                          "keep large data in files that your functions read, not in the flow")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _unreadable(f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})",
                          "save the file with UTF-8 encoding") from None


def _unreadable(message: str, hint: str | None) -> FlowValidationError:
    return FlowValidationError([Problem(None, message, hint)])


def _missing_hint(path: Path) -> str:
    for suffix in (".yaml", ".yml"):
        if path.suffix != suffix and path.with_name(path.name + suffix).is_file():
            return f"did you mean {path}{suffix}?"
    return "check the path; flow files are YAML, e.g. flows/weather.yaml"


@lru_cache(maxsize=1)
def _meta_validator() -> Draft202012Validator:
    """Checks that a value is a JSON Schema, as `Draft202012Validator.check_schema` does, but reports all errors."""
    return Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _close(name: str, known: Iterable[str], what: str, otherwise: str) -> str:
    """'did you mean ...?', or the known names, or what to do when there are none."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{what}: {', '.join(known)}" if known else otherwise


class _Builder:
    """Builds the Flow from schema-valid data, collecting every semantic problem on the way."""

    def __init__(self, data: dict[str, Any], positions: Positions, path: Path, flow_dir: Path):
        self.data = data
        self.pos = positions
        self.path = path
        self.flow_dir = flow_dir
        self.problems: list[Problem] = []
        self.step_index: dict[str, int] = {}
        for index, step in enumerate(data["steps"]):
            self.step_index.setdefault(step["id"], index)
        self.input_names = list(data.get("inputs", {}))
        self.function_names = list(data.get("functions", {}))
        self.mcp: Any = None  # the `mcp:` section's checks (flowrunner.mcp._flow), only for flows that have one
        if "mcp" in data:
            from .mcp._flow import MCPSection

            self.mcp = MCPSection(data, positions, str(flow_dir), self.function_names, self.problems)
        self.option_names = request_option_names()
        self.allowed_names = {"inputs", "steps", "loop"} | global_names()

    def problem(self, path: JsonPath, message: str, hint: str | None = None, *, at_key: bool = False) -> None:
        location = self.pos.key(path) if at_key else self.pos.value(path)
        self.problems.append(Problem(location, message, hint))

    def build(self) -> Flow:
        data = self.data
        self._check_durations()
        if self.problems:
            raise FlowValidationError(sort_problems(self.problems))
        inputs = {name: self._input(name, decl) for name, decl in data.get("inputs", {}).items()}
        functions = {name: self._function(name, decl) for name, decl in data.get("functions", {}).items()}
        steps = tuple(self._step(index, raw) for index, raw in enumerate(data["steps"]))
        outputs = self._outputs(steps)
        defaults = self._options(data.get("defaults", {}), ("defaults",))
        self._check_defaults(defaults)
        tests = self._tests(inputs, outputs)
        if self.problems:
            raise FlowValidationError(sort_problems(self.problems))
        return Flow(
            name=data.get("name", self.path.stem),
            path=self.path,
            steps=steps,
            description=data.get("description"),
            model=data.get("model"),
            api=data.get("api", "tools"),
            inputs=inputs,
            functions=functions,
            outputs=outputs,
            defaults=defaults,
            rate_limit=RateLimit(**data.get("rate_limit", {})),
            prices={model: Price(**price) for model, price in data.get("prices", {}).items()},
            tests=tests,
            **(self.mcp.flow_fields() if self.mcp is not None else {}),
        )

    def _check_durations(self) -> None:
        """Durations the schema's pattern lets through but no timer can hold (`99999999999h`)."""
        retries: list[JsonPath] = [("retry",), *(("steps", i, "retry") for i in range(len(self.data["steps"])))]
        places = [base + key for base in retries for key in (("max_elapsed",), ("backoff", "initial"), ("backoff", "max"))]
        places += [("functions", name, "timeout") for name in self.data.get("functions", {})]
        for path in places:
            value: Any = self.data
            for key in path:
                value = value[key] if isinstance(key, int) else value.get(key) if isinstance(value, dict) else None
                if value is None:
                    break
            if value is None:
                continue
            try:
                parse_duration(value)
            except ValueError as exc:
                self.problem(path, str(exc), "write something like 30s, 5m or 1h")

    def _tests(self, inputs: dict[str, InputSpec], outputs: dict[str, Template]) -> tuple[TestCase, ...]:
        if "tests" not in self.data:
            return ()
        from ._testcases import TestCaseBuilder  # with the matchers: only for flows that have tests

        callable_names = self.function_names + (self.mcp.names() if self.mcp is not None else [])
        builder = TestCaseBuilder(self.pos, inputs, callable_names, list(outputs), list(self.step_index), _close)
        tests = builder.build(self.data.get("tests", []))
        self.problems.extend(builder.problems)
        return tests

    # -- inputs and functions -------------------------------------------------------------------

    def _input(self, name: str, decl: dict[str, Any]) -> InputSpec:
        base: JsonPath = ("inputs", name)
        type_schema = {"type": decl.get("type", "string")}
        schema = dict(type_schema)
        if "enum" in decl:
            schema["enum"] = decl["enum"]
            for index, item in enumerate(decl["enum"]):
                for error in Draft202012Validator(type_schema).iter_errors(item):
                    self.problems.extend(error_problems(error, self.pos, base + ("enum", index)))
        default = decl.get("default", MISSING)
        if default is not MISSING and default is not None:  # null: optional, with no value
            for error in Draft202012Validator(schema).iter_errors(default):
                hint = ("the default must be one of the input's enum values" if error.validator == "enum"
                        else f"the default must match the input's type ({schema['type']})")
                for problem in error_problems(error, self.pos, base + ("default",)):
                    self.problems.append(Problem(problem.location, problem.message, problem.hint or hint))
        return InputSpec(name=name, schema=schema, default=default, description=decl.get("description"),
                         env=decl.get("env"), location=self.pos.key(base))

    def _function(self, name: str, decl: dict[str, Any]) -> FunctionSpec:
        base: JsonPath = ("functions", name)
        parameters = decl.get("parameters", {"type": "object", "properties": {}})
        params_ok = self._check_json_schema(parameters, base + ("parameters",))
        if params_ok and parameters.get("type") != "object":
            at = base + ("parameters", "type") if "type" in parameters else base + ("parameters",)
            got = describe(parameters["type"]) if "type" in parameters else "no type"
            self.problem(at, f"{format_path(base)}.parameters must be of type object, got {got}",
                         "OpenAI requires the arguments to be an object: "
                         "{type: object, properties: {...}, required: [...]}")
            params_ok = False
        if params_ok and "properties" not in parameters and "additionalProperties" not in parameters:
            # JSON Schema would let any argument through; flowrunner passes only declared ones: say which is meant.
            self.problem(base + ("parameters",), f"{format_path(base)}.parameters is open (it declares no "
                         "properties), and only declared arguments reach a function",
                         "declare the arguments under properties (properties: {} for none), or write "
                         "additionalProperties: true to let the model pass any")
        entry = decl["entry"]
        func = None
        try:
            func = resolve_entry(entry, self.flow_dir)
        except EntryPointError as exc:
            self.problem(base + ("entry",), str(exc), exc.hint)
        if func is not None and params_ok:
            for reason in check_signature(func, parameters):
                self.problem(base + ("entry",), f"{entry} does not fit the parameters declared for {name!r}: {reason}",
                             "give the Python function one keyword argument per property, "
                             "with a default for each one not in required")
        timeout = parse_duration(decl["timeout"]) if "timeout" in decl else None
        if timeout == 0:
            self.problem(base + ("timeout",), "a function timeout of 0 would fail every call",
                         "give the longest the function may take, e.g. 10s, or leave timeout out")
        return FunctionSpec(name=name, entry=entry, parameters=parameters, description=decl.get("description"),
                            func=func, on_invalid_arguments=decl.get("on_invalid_arguments", "reply"),
                            on_error=decl.get("on_error", "reply"), timeout=timeout, location=self.pos.key(base),
                            approve=decl.get("approve") == "ask")

    def _check_json_schema(self, schema: Any, path: JsonPath) -> bool:
        """Report where `schema` is not a valid JSON Schema (draft 2020-12); True when it is."""
        found = [p for error in _meta_validator().iter_errors(schema) for p in error_problems(error, self.pos, path)]
        for problem in found:
            self.problems.append(Problem(problem.location, f"invalid JSON Schema: {problem.message}",
                                         problem.hint or "see https://json-schema.org/understanding-json-schema"))
        return not found

    # -- steps ----------------------------------------------------------------------------------

    def _step(self, index: int, raw: dict[str, Any]) -> Step:
        base: JsonPath = ("steps", index)
        step_id = raw["id"]
        first = self.step_index[step_id]
        if first != index:
            line = self.pos.value(("steps", first, "id")).line
            self.problem(base + ("id",), f"duplicate step id {step_id!r} (steps[{first}] on line {line} has it too)",
                         "step ids must be unique: templates read a step's answer as steps.<id>")
        messages = []
        for number, message in enumerate(raw["messages"]):
            template = self._template(message["content"], base + ("messages", number, "content"), index)
            if template is not None:
                messages.append(Message(role=message["role"], content=template, name=message.get("name")))
        functions = tuple(raw.get("functions", ()))
        for number, name in enumerate(functions):
            if name not in self.function_names and not (self.mcp and self.mcp.offers(name, base + ("functions", number), step_id)):
                self.problem(base + ("functions", number),
                             f"unknown function {name!r} in {format_path(base)}.functions",
                             _close(name, self.function_names, "declared functions",
                                    "declare it under the top-level functions: with an entry: module:function"))
        options = self._options(raw, base)
        if not functions:
            for key in ("tool_choice", "parallel_tool_calls"):
                if key in raw:
                    self.problem(base + (key,), f"{key} is set on {format_path(base)}, which has no functions",
                                 f"list the functions the model may call (functions: [...]), or remove {key}",
                                 at_key=True)
        else:
            self._check_tool_choice(options, base, functions, f"{format_path(base)} does not list",
                                    "the step's functions")
        if "repair" in raw and "response_format" not in options and "response_format" not in self.data.get("defaults", {}):
            self.problem(base + ("repair",), f"repair is set on {format_path(base)}, which has no response_format",
                         "repair re-asks for a structured answer; set response_format, or remove repair", at_key=True)
        for key in ("on_max_rounds", "max_calls"):
            if key in raw and not functions:
                self.problem(base + (key,), f"{key} is set on {format_path(base)}, which has no functions",
                             "it only matters when the model calls functions; remove it", at_key=True)
        return Step(id=step_id, messages=tuple(messages), functions=functions, max_rounds=raw.get("max_rounds", 8),
                    on_max_rounds=raw.get("on_max_rounds", "fail"), repair=raw.get("repair", 2),
                    on_refusal=raw.get("on_refusal", "fail"), on_length=raw.get("on_length", "warn"),
                    max_calls=raw.get("max_calls", self.data.get("max_calls", 32)),
                    retry=retry_policy(_merge_retry(self.data.get("retry", {}), raw.get("retry", {}))),
                    model=raw.get("model"), options=options, extra_body=dict(raw.get("extra_body", {})),
                    location=self.pos.value(base))

    def _options(self, raw: dict[str, Any], base: JsonPath) -> dict[str, Any]:
        """The request options among a step's (or `defaults`') keys, as given; schemas in them checked."""
        options = {key: value for key, value in raw.items() if key in self.option_names}
        response_format = options.get("response_format")
        if isinstance(response_format, dict) and "schema" in response_format.get("json_schema", {}):
            self._check_json_schema(response_format["json_schema"]["schema"],
                                    base + ("response_format", "json_schema", "schema"))
        return options

    def _check_defaults(self, defaults: dict[str, Any]) -> None:
        """Function-calling options in `defaults` reach every step: each must list functions."""
        bare = [index for index, raw in enumerate(self.data["steps"]) if not raw.get("functions")]
        for key in ("tool_choice", "parallel_tool_calls"):
            if key in defaults and bare:
                self.problem(("defaults", key), f"defaults sets {key}, but steps[{bare[0]}] "
                             f"({self.data['steps'][bare[0]]['id']!r}) has no functions",
                             f"set {key} on the steps that list functions instead", at_key=True)
        self._check_tool_choice(defaults, ("defaults",), self.function_names, "the flow does not declare",
                                "the declared functions")

    def _check_tool_choice(self, options: dict[str, Any], base: JsonPath, allowed: Sequence[str],
                           owner: str, listed: str) -> None:
        """A tool_choice forcing a function must name one the model is offered."""
        choice = options.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            name = choice["function"]["name"]
            if name not in allowed:
                self.problem(base + ("tool_choice", "function", "name"),
                             f"tool_choice names function {name!r}, which {owner}",
                             _close(name, allowed, listed, f"add {name!r} to {listed}"))

    # -- templates ------------------------------------------------------------------------------

    def _outputs(self, steps: tuple[Step, ...]) -> dict[str, Template]:
        if "outputs" not in self.data:
            last = self.data["steps"][-1]["id"]
            return {last: Template(f"{{{{ steps.{last}.content }}}}", self.pos.value(("steps", len(steps) - 1)))}
        outputs = {}
        for name, source in self.data["outputs"].items():
            template = self._template(source, ("outputs", name), None)
            if template is not None:
                outputs[name] = template
        return outputs

    def _template(self, source: str, path: JsonPath, step: int | None) -> Template | None:
        """Compile a template and check what it reads; `step` is the reading step's index (None: outputs)."""
        made = compile_template(source, self.pos.value(path))
        if isinstance(made, Problem):
            self.problems.append(made)
            return None
        for name in sorted(made.names() - self.allowed_names):
            self.problem(path, f"unknown variable {name!r} in the template", self._variable_hint(name))
        for ref in dict.fromkeys(made.references("steps")):
            if ref not in self.step_index:
                self.problem(path, f"unknown step {ref!r} (in steps.{ref})",
                             _close(ref, self.step_index, "step ids", "this flow has no step with that id"))
            elif step is not None and self.step_index[ref] >= step:
                reader = self.data["steps"][step]["id"]
                if self.step_index[ref] == step:
                    self.problem(path, f"step {ref!r} reads its own answer (steps.{ref})",
                                 "a template can only read earlier steps; use outputs to report this step's answer")
                else:
                    self.problem(path,
                                 f"step {ref!r} runs after step {reader!r}; a template can only read earlier steps",
                                 f"move step {ref!r} before {reader!r}, or read it in outputs")
        for ref, attr in dict.fromkeys(made.attributes("steps")):
            if ref in self.step_index and attr not in STEP_ATTRIBUTES:
                close = difflib.get_close_matches(attr, STEP_ATTRIBUTES, n=1, cutoff=0.6)
                guess = f"did you mean steps.{ref}.{close[0]}? " if close else ""
                self.problem(path, f"a step has no {attr!r} (in steps.{ref}.{attr})",
                             f"{guess}a step has only content (its answer's text) and json (that text parsed)")
        for ref in dict.fromkeys(made.references("inputs")):
            if ref not in self.input_names:
                self.problem(path, f"unknown input {ref!r} (in inputs.{ref})",
                             _close(ref, self.input_names, "declared inputs",
                                    f"the flow declares no inputs; add one: inputs: {{{ref}: {{type: string}}}}"))
        return made

    def _variable_hint(self, name: str) -> str:
        if name in self.input_names:
            return f"did you mean inputs.{name}?"
        if name in self.step_index:
            return f"did you mean steps.{name}.content?"
        return _TEMPLATE_HINT


def _merge_retry(flow: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """The flow's retry keys with the step's on top (backoff merged key by key too)."""
    merged = {**flow, **step}
    if "backoff" in flow and "backoff" in step:
        merged["backoff"] = {**flow["backoff"], **step["backoff"]}
    return merged


def retry_policy(raw: dict[str, Any]) -> RetryPolicy:
    """A RetryPolicy from schema-valid `retry:` data (the flow's keys with a step's on top)."""
    defaults = RetryPolicy()
    backoff_raw = raw.get("backoff", {})
    base = Backoff()
    backoff = Backoff(
        initial=parse_duration(backoff_raw["initial"]) if "initial" in backoff_raw else base.initial,
        multiplier=float(backoff_raw.get("multiplier", base.multiplier)),
        max=parse_duration(backoff_raw["max"]) if "max" in backoff_raw else base.max,
        jitter=backoff_raw.get("jitter", base.jitter),
    )
    return RetryPolicy(
        max_attempts=raw.get("max_attempts", defaults.max_attempts),
        on=frozenset(str(item) for item in raw["on"]) if "on" in raw else defaults.on,
        backoff=backoff,
        max_elapsed=parse_duration(raw["max_elapsed"]) if "max_elapsed" in raw else defaults.max_elapsed,
    )
