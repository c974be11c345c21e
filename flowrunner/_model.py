"""The validated flow: plain frozen dataclasses, built by the loader and read by the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from ._exceptions import Location
from ._pricing import Price
from ._ratelimit import RateLimit
from ._retry import RetryPolicy
from ._templating import Template

if TYPE_CHECKING:
    from ._expect import Check

Api = Literal["tools", "functions"]
"""`tools`: the current tool-calling protocol. `functions`: the legacy `functions`/`function_call` one."""
OnProblem = Literal["reply", "fail"]
"""`reply`: tell the model what went wrong and let it go on. `fail`: end the run."""
OnMaxRounds = Literal["fail", "answer"]
"""`fail`: end the run. `answer`: one last request without functions, so the model must answer."""
OnRefusal = Literal["fail", "output"]
"""`fail`: a refusal fails the step. `output`: the refusal's text is the step's answer."""
OnLength = Literal["warn", "fail"]
"""`warn`: an answer cut at the token limit is the step's answer, with a warning. `fail`: it fails the step."""


class _Missing:
    """Sentinel for "no default": None is a legitimate default value for an input."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class InputSpec:
    """A declared input: a JSON Schema for its value, and maybe a default."""

    name: str
    schema: dict[str, Any]
    default: Any = MISSING
    description: str | None = None
    env: str | None = None
    """An environment variable to read the value from when it is not given; its value is a secret."""
    location: Location | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.env is None


@dataclass(frozen=True)
class FunctionSpec:
    """A function the model may call, bound to a Python entry point `module:function`."""

    name: str
    entry: str
    parameters: dict[str, Any]
    description: str | None = None
    func: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    on_invalid_arguments: OnProblem = "reply"
    on_error: OnProblem = "reply"
    timeout: float | None = None
    """Seconds the function may run before the call counts as an error; None: no limit."""
    location: Location | None = None
    approve: bool = False
    """`approve: ask`: each call is put to the user first (the engine's `approve` callback); refused without one."""
    server: str | None = None
    """The MCP server whose tool this is (see `flowrunner.mcp`); None for a Python function."""

    def tool(self) -> dict[str, Any]:
        """The declaration sent to the API under `tools`."""
        return {"type": "function", "function": self.legacy()}

    def legacy(self) -> dict[str, Any]:
        """The declaration sent under the legacy `functions` key (also the inner part of a tool)."""
        decl: dict[str, Any] = {"name": self.name}
        if self.description:
            decl["description"] = self.description
        decl["parameters"] = self.parameters
        return decl


@dataclass(frozen=True)
class Message:
    """A chat message whose content is a template, rendered right before the request."""

    role: str
    content: Template
    name: str | None = None


@dataclass(frozen=True)
class Step:
    """One chat completion, with its own function-call rounds."""

    id: str
    messages: tuple[Message, ...]
    functions: tuple[str, ...] = ()
    max_rounds: int = 8
    on_max_rounds: OnMaxRounds = "fail"
    max_calls: int = 32
    """The most function calls run from one response; the rest are answered 'not run' (the step's, else the flow's)."""
    repair: int = 2
    """With a response_format: how many times an answer that does not match is sent back to be fixed."""
    on_refusal: OnRefusal = "fail"
    on_length: OnLength = "warn"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """The effective policy: the flow's `retry` with the step's own keys on top."""
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Request options passed through to the API (temperature, max_tokens, ...)."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Server-specific fields (vLLM's top_k, ...) sent as they are."""
    location: Location | None = None


@dataclass(frozen=True)
class TestCase:
    """A test declared in the flow: inputs to run it with, and the checks its run record must pass."""

    __test__ = False  # not a pytest test class, whatever imports it

    name: str
    inputs: dict[str, Any] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    description: str | None = None
    location: Location | None = None


@dataclass(frozen=True)
class Flow:
    """A whole flow file, validated: everything the engine needs and nothing it must check again."""

    name: str
    path: Path
    steps: tuple[Step, ...]
    description: str | None = None
    model: str | None = None
    api: Api = "tools"
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    outputs: dict[str, Template] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    """Request options for every step; a step's own options win."""
    rate_limit: RateLimit = field(default_factory=RateLimit)
    prices: dict[str, Price] = field(default_factory=dict)
    """Prices by model name (US dollars per million tokens), beating the price table's."""
    tests: tuple[TestCase, ...] = ()
    """The flow's own test cases (`tests:`), run by `flowrun test` and the pytest plugin."""
    mcp: tuple[Any, ...] = ()
    """The MCP servers of the flow's `mcp:` (`flowrunner.mcp._config.ServerSpec`); their tools join `functions`
    when a run starts (`flowrunner.mcp.attach`)."""
    mcp_refs: tuple[tuple[str, str, Location], ...] = ()
    """(step id, name, where) of each name a step lists that only a server's `tools/list` can provide."""

    @property
    def default_cassette(self) -> Path:
        """Where this flow's cassette lives unless told otherwise: `cassettes/<stem>.yaml` beside it."""
        return self.path.parent / "cassettes" / f"{self.path.stem}.yaml"
