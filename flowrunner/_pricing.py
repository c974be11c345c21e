"""What a run cost, in US dollars: each round's token usage at its model's price.

Prices are per million tokens, as providers publish them: input (prompt) tokens, output (completion,
reasoning included) tokens, and cached input tokens (`usage.prompt_tokens_details.cached_tokens`,
part of the prompt tokens, charged at the cached-input price). A price comes from, in order: the
command line's `--price`, the flow's `prices:`, then the table of OpenAI's prices shipped in the
`genai-prices` package (pydantic's; its data is in the wheel, so the table works offline, and is as
recent as the installed version: `pip install -U genai-prices` refreshes it). A model named in
none of them has no cost (None), never a guess; nor does a run, step or batch any of whose answered
rounds has none: a partial sum would read as the whole. A round that got no answer cost nothing.

`genai-prices` is imported only when a round's model has no price of the user's (it takes a third
of a second), so `flowrun --help` and `validate` never load it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from ._record import RoundRecord, RunRecord, StepRecord

MILLION = Decimal(1_000_000)
BATCH_DISCOUNT = Decimal("0.5")
"""The Batch API's prices are half the synchronous ones."""

PRICE_HINT = ("set one in the flow (prices: {MODEL: {input: 0.15, output: 0.60, cached_input: 0.075}}, "
              "US dollars per million tokens) or with --price MODEL=input:0.15,output:0.6")


@dataclass(frozen=True)
class Price:
    """A model's price in US dollars per million tokens; cached input at the input price unless given."""

    input: float
    output: float
    cached_input: float | None = None


Prices = Mapping[str, Price]


def parse_price(text: str) -> tuple[str, Price]:
    """`MODEL=input:0.15,output:0.6[,cached_input:0.075]` (the CLI's form); ValueError says what is accepted."""
    model, sep, rest = text.partition("=")
    model = model.strip()
    if not sep or not model:
        raise ValueError(f"{text!r}: expected MODEL=input:PRICE,output:PRICE[,cached_input:PRICE] "
                         "(US dollars per million tokens)")
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        name, sep, number = part.partition(":")
        name = name.strip()
        if not sep or name not in ("input", "output", "cached_input"):
            raise ValueError(f"{part!r}: expected input:PRICE, output:PRICE or cached_input:PRICE")
        if name in values:
            raise ValueError(f"{name} is given twice")
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"{part!r}: {name} must be a number (US dollars per million tokens)") from None
        if not 0 <= value < 1e9:  # also refuses nan and inf
            raise ValueError(f"{part!r}: {name} must be a number from 0 (dollars per million tokens)")
        values[name] = value
    missing = [name for name in ("input", "output") if name not in values]
    if missing:
        raise ValueError(f"{text!r}: {' and '.join(missing)} price missing (both input and output are needed)")
    return model, Price(**values)


def cost_of(model: str | None, usage: Mapping[str, Any] | None, *, batch: bool = False,
            prices: Prices | None = None, also: str | None = None) -> float | None:
    """The cost in US dollars of one answer's `usage` (an OpenAI `usage` object) with `model`; None when
    the model has no known price or the usage no token counts. `batch`: at the Batch API's half price.
    `also`: another name for the model (the one requested, when `model` is the one that answered),
    tried after `model`; a price of the user's for either beats the table's."""
    tokens = _tokens(usage)
    names = [name for name in dict.fromkeys([model, also]) if name]
    if tokens is None or not names:
        return None
    cost = next((c for c in (_user_cost(name, tokens, prices or {}) for name in names) if c is not None), None)
    if cost is None:
        cost = next((c for c in (_table_cost(name, tokens) for name in names) if c is not None), None)
    if cost is None:
        return None
    return _dollars(cost * BATCH_DISCOUNT if batch else cost)


def price_run(record: RunRecord, prices: Prices, *, batch: bool = False) -> None:
    """Give every round, step and the run its cost (see the module docstring for when it is None);
    `batch`: the answers came through the Batch API, at half the price."""
    for step in record.steps:
        price_step(step, prices, batch=batch)
    record.cost = total(step.cost for step in record.steps)


def price_step(step: StepRecord, prices: Prices, *, batch: bool = False) -> None:
    """Give the step's rounds and the step their cost (`batch`: at the Batch API's half price)."""
    for round_ in step.rounds:
        round_.cost = _round_cost(round_, step.model, prices, batch)
    step.cost = total(round_.cost for round_ in step.rounds)


def total(costs: Iterable[float | None]) -> float | None:
    """The sum, or None if any is unknown."""
    amount = Decimal(0)
    for cost in costs:
        if cost is None:
            return None
        amount += Decimal(repr(cost))
    return _dollars(amount)


class CostTally:
    """The cost of many runs (a batch): their sum, or None once one has none, with the reasons, each once."""

    def __init__(self) -> None:
        self._amount: Decimal | None = Decimal(0)
        self.problems: dict[str, None] = {}

    def add(self, record: RunRecord) -> None:
        if record.cost is None:
            self._amount = None
            self.problems.update(dict.fromkeys(cost_problems(record)))
        elif self._amount is not None:
            self._amount += Decimal(repr(record.cost))

    @property
    def cost(self) -> float | None:
        return None if self._amount is None else _dollars(self._amount)


def cost_problems(record: RunRecord) -> list[str]:
    """Why rounds of the record have no cost, once per model: no price for it, or no token usage said."""
    problems: dict[str, None] = {}
    for step in record.steps:
        for round_ in step.rounds:
            if round_.cost is None:
                model = round_.model or step.model
                problems.setdefault(f"no price for model {model!r}" if _tokens(round_.usage) else
                                    f"the server reported no token usage for model {model!r}", None)
    return list(problems)


def cost_note(problems: Iterable[str]) -> str:
    """Why there is no cost, and how to give one: said once per run or batch."""
    problems = list(problems)
    hint = f"\n  hint: {PRICE_HINT}" if any(p.startswith("no price") for p in problems) else ""
    return f"cost unknown: {'; '.join(problems)}{hint}"


def _round_cost(round_: RoundRecord, requested: str, prices: Prices, batch: bool = False) -> float | None:
    if round_.usage is None and round_.response_id is None and round_.attempts and round_.attempts[-1].error:
        return 0.0  # no answer came, only errors: nothing was billed
    return cost_of(round_.model or requested, round_.usage, batch=batch, prices=prices, also=requested)


def _tokens(usage: Mapping[str, Any] | None) -> tuple[int, int, int] | None:
    """(prompt, cached, completion) tokens, or None when the usage does not say."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    return prompt, min(cached or 0, prompt), completion


def _count(value: Any) -> int | None:
    """A token count, if `value` is one (an outside answer's usage may hold anything)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12 else None


_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _user_price(model: str, prices: Prices) -> Price | None:
    """The user's price for `model`, or for it without a date suffix (`gpt-4o-mini-2024-07-18`)."""
    return prices.get(model) or prices.get(_DATED.sub("", model))


def _user_cost(model: str, tokens: tuple[int, int, int], prices: Prices) -> Decimal | None:
    price = _user_price(model, prices)
    return None if price is None else _at(price, *tokens)


def _at(price: Price, prompt: int, cached: int, completion: int) -> Decimal:
    cached_price = price.input if price.cached_input is None else price.cached_input
    return ((prompt - cached) * Decimal(repr(price.input)) + cached * Decimal(repr(cached_price))
            + completion * Decimal(repr(price.output))) / MILLION


def _table_cost(model: str, tokens: tuple[int, int, int]) -> Decimal | None:
    """OpenAI's price for `model` from genai-prices' table; None if it has none (or is not installed).
    A model whose table price is flat per token (see `_flat_rates`) is priced from its rates, without asking
    the table again: a lookup costs about 0.1 ms, which every round of a batch would pay."""
    if len(model) > 200:
        return None  # no model is named so; a hostile server's answer may say anything
    prompt, cached, completion = tokens
    rates = _flat_rates(model)
    if rates is not None and max(tokens) <= _PROBE:
        per_input, per_cached, per_output = rates
        return (prompt - cached) * per_input + cached * per_cached + completion * per_output
    return _looked_up(model, tokens)


def _looked_up(model: str, tokens: tuple[int, int, int]) -> Decimal | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:
        return None
    prompt, cached, completion = tokens
    try:
        result = calc_price(Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion),
                            model, provider_id="openai")
    except (LookupError, ValueError, ArithmeticError):  # not in the table (or a price it cannot apply)
        return None
    return Decimal(result.total_price)


_PROBE = 1_000_000
_FLAT: dict[str, tuple[Decimal, Decimal, Decimal] | None] = {}


def _flat_rates(model: str) -> tuple[Decimal, Decimal, Decimal] | None:
    """`model`'s table price per input, cached input and output token, if it is the same at every size up to a
    million tokens (checked at 1,000 and a million of each: a tiered price, such as one that rises past
    200k prompt tokens, fails the check and is looked up each time); None otherwise, or if the table has none."""
    if model not in _FLAT:
        if len(_FLAT) >= 1024:
            _FLAT.clear()
        rates: list[Decimal] = []
        for shape in ((1, 0, 0), (1, 1, 0), (0, 0, 1)):  # input alone, input all cached, output
            small, large = (_looked_up(model, tuple(n * k for n in shape)) for k in (1_000, _PROBE))  # type: ignore[arg-type]
            if small is None or large is None or small * (_PROBE // 1_000) != large:
                _FLAT[model] = None
                break
            rates.append(large / _PROBE)
        else:
            _FLAT[model] = (rates[0], rates[1], rates[2])
    return _FLAT[model]


def _dollars(amount: Decimal) -> float:
    """Dollars as a float, to a millionth of a cent (a sum of floats would grow noise digits)."""
    return float(round(amount, 8))
