"""The test server's "model": a few deterministic rules that stand in for an LLM.

The same request always gets the same answer: text, tool calls and ids depend only on the request
(ids are hashes of the body without `stream`/`stream_options`, so a streamed answer and its
non-streamed twin share them); only `created` follows the clock. "The message" below is the last
user message (the last message of any role if there is none). Rules, first match wins:

1. Tool results. If `tool` (or legacy `function`) messages follow the last user message, the answer
   repeats every value in them, one sentence per result, e.g. get_current_weather returning
   `{"location": "Boston", "temperature": "72", "forecast": ["sunny", "windy"]}` gives
   "get_current_weather: location Boston, temperature 72, forecast sunny and windy."
   A result that is not JSON is quoted: 'get_capital: "Paris".'  finish_reason "stop".
2. Tool call. When `tools` (or legacy `functions`) are offered and `tool_choice` (`function_call`)
   is not "none", every tool sharing a word with the message is called: a lower-case word of 3+
   letters, not a stop word, found both in the message and in the tool's name (split on "_" and
   camelCase) or description. With `parallel_tool_calls: false` (and always for legacy
   `functions`) only the first call is made; tools sharing more words come first, ties in the
   order offered. `tool_choice: {"type": "function", "function": {"name": N}}` forces N (an
   unknown N is a 400, as with OpenAI); "required" forces the best match, else the first tool.
   Other `tool_choice` forms act like "auto". Arguments come from the message, per property of
   the tool's `parameters`:
   - with an `enum`: the first enum value that appears in the message; else omitted (the first
     value if required);
   - a string: the phrase after the last of in/for/at/of/about/near, up to . ? ! ; : or the end
     ("What's the weather in Boston?" -> "Boston"). A phrase containing " and " or ", " is split
     and the tool called once per part: "weather in Boston and Tokyo" -> two calls;
   - a number or integer: the numbers in the message, in order (the first numeric property gets
     the first number, the next one the second; integers skip decimals);
   - a boolean: omitted, or false if required; arrays and objects: omitted.
   A tool with a required property left unfilled is not called, unless forced: then a required
   string gets the whole message, a number 0, a boolean false, an array [] and an object {}.
   The answer has `content: null`, `tool_calls` (ids "call_" + 24 hex digits, `arguments` a JSON
   string) and finish_reason "tool_calls"; legacy `functions` get one `function_call` instead and
   finish_reason "function_call".
3. Plain answers from the message:
   - a word starting "summar" (summarise, summary...): the first sentence, at most 30 words, of
     the text after the first colon or newline (else of the whole message);
   - "translate ... to|into LANGUAGE": "[xx] " + the text, NOT translated (this is no model). xx is
     the ISO 639-1 code for Chinese, French, German, Italian, Japanese, Korean, Portuguese and
     Spanish, else the language name as written. The text is what follows the first colon, else
     what lies between "translate" and "to/into LANGUAGE", without quotes;
   - a message starting with hello/hi/hey: "Hello! How can I help you today?";
   - anything else: "You said: <message>".
4. `max_completion_tokens` (else `max_tokens`) cuts a text answer to that many words and sets
   finish_reason "length". Tool calls are never cut.

A token is a whitespace-separated word. `usage.prompt_tokens` counts the words of every message's
text plus those of the JSON of `tools`/`functions`; `completion_tokens` those of the answer (or of
the call arguments); each is at least 1. There is always exactly one choice (`n` is ignored).

Streaming (`stream: true`) sends the same answer as chunks: the role (with `content` "" for text,
null for calls), the text three words at a time, each call's id and name then its arguments in up
to three fragments, a last chunk with finish_reason, and with `stream_options.include_usage` an
extra chunk with `choices: []` and the usage (earlier chunks carry `usage: null`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

FINGERPRINT = "fp_flowrunner"
GREETING = "Hello! How can I help you today?"
LANGUAGES = {"chinese": "zh", "french": "fr", "german": "de", "italian": "it", "japanese": "ja",
             "korean": "ko", "portuguese": "pt", "spanish": "es"}
STOP_WORDS = frozenset(
    "about after all also and any are because been but can could did does for from get give given "
    "has have her his how into its just know let like make may more most near not now off only our "
    "out over please same she should show some such tell than that the their them then there these "
    "they this those too under use very want was were what when where which while who why will "
    "with would you your".split())
# A forced tool with a required property the message cannot fill still gets called, with these.
FALLBACKS: dict[str, Any] = {"number": 0, "integer": 0, "boolean": False, "array": [], "object": {}}
QUOTES = "\"'“”‘’"
_PREPOSITION = re.compile(r"\b(?:in|for|at|of|about|near)\s+", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_TRANSLATE = re.compile(r"\btranslate\b(.*)\b(?:to|into)\s+([A-Za-z]+)", re.IGNORECASE | re.DOTALL)


class RuleError(ValueError):
    """The request is valid JSON Schema-wise but cannot be answered (OpenAI answers 400 too)."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Call:
    """One function call: its id, name and JSON-encoded arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Answer:
    """What the rules decided, before it is shaped into an API object."""

    rule: str
    content: str | None
    finish_reason: str = "stop"
    calls: tuple[Call, ...] = ()
    legacy: bool = False  # answer with `function_call` (deprecated `functions` API)


def rule_name(request: dict[str, Any]) -> str:
    """Which rule answers `request` (named in the server's error if that answer is invalid)."""
    return _decide(request).rule


def complete(request: dict[str, Any]) -> dict[str, Any]:
    """The full `chat.completion` object for a valid request."""
    answer = _decide(request)
    message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None,
                               "annotations": []}
    if answer.legacy and answer.calls:
        call = answer.calls[0]
        message["function_call"] = {"name": call.name, "arguments": call.arguments}
    elif answer.calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in answer.calls]
    return {"id": "chatcmpl-" + _digest(request)[:29], "object": "chat.completion",
            "created": int(time.time()), "model": request["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": answer.finish_reason}],
            "usage": _usage(request, answer), "service_tier": "default",
            "system_fingerprint": FINGERPRINT}


def stream_chunks(request: dict[str, Any], full: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of the streamed answer (`full`: `complete`'s, if already made)."""
    full = full or complete(request)
    message, finish_reason = full["choices"][0]["message"], full["choices"][0]["finish_reason"]
    with_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    head = {"id": full["id"], "object": "chat.completion.chunk", "created": full["created"],
            "model": full["model"], "service_tier": "default", "system_fingerprint": FINGERPRINT}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], **({"usage": None} if with_usage else {})}

    calls = message.get("tool_calls") or []
    function_call = message.get("function_call")
    first = "" if message["content"] is not None else None
    chunks = [chunk({"role": "assistant", "content": first, "refusal": None})]
    chunks += [chunk({"content": piece}) for piece in _pieces(message["content"] or "")]
    for index, call in enumerate(calls):
        start = {"index": index, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": ""}}
        chunks.append(chunk({"tool_calls": [start]}))
        chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                   for part in _fragments(call["function"]["arguments"])]
    if function_call:
        chunks.append(chunk({"function_call": {"name": function_call["name"], "arguments": ""}}))
        chunks += [chunk({"function_call": {"arguments": part}})
                   for part in _fragments(function_call["arguments"])]
    chunks.append(chunk({}, finish_reason))
    if with_usage:
        chunks.append({**head, "choices": [], "usage": full["usage"]})
    return chunks


def _digest(request: dict[str, Any]) -> str:
    """Hash of the request without its transport options."""
    content = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _text(content: Any) -> str:
    """The text of a message's `content`: a string, null, or a list of content parts."""
    if isinstance(content, list):
        return " ".join(p.get("text") or p.get("refusal") or "" for p in content)
    return content or ""


def _count(text: str) -> int:
    return len(text.split())


def _decide(request: dict[str, Any]) -> Answer:
    """Apply the rules of the module docstring, in order."""
    messages = request["messages"]
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    results = [m for m in messages[last_user + 1:] if m["role"] in ("tool", "function")]
    if results:
        return Answer("tool results", _results_text(messages, results))
    prompt = _text(messages[last_user].get("content")).strip()
    calls, legacy = _calls(request, prompt)
    if calls:
        return Answer("tool call", None, "function_call" if legacy else "tool_calls", calls, legacy)
    rule, text = _plain(prompt)
    limit = next((request[k] for k in ("max_completion_tokens", "max_tokens")
                  if request.get(k) is not None), None)
    words = list(re.finditer(r"\S+", text))
    if limit is not None and len(words) > limit:
        return Answer(rule, text[:words[limit - 1].end()] if limit > 0 else "", "length")
    return Answer(rule, text)


# -- rule 1: tool results ---------------------------------------------------------------------

def _results_text(messages: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    names = {call["id"]: call["function"]["name"] for m in messages if m["role"] == "assistant"
             for call in m.get("tool_calls") or [] if call.get("type") == "function"}
    sentences = []
    for result in results:
        name = result.get("name") if result["role"] == "function" else None
        name = name or names.get(result.get("tool_call_id"), "tool")
        text = _text(result.get("content"))
        try:
            said = _say(json.loads(text))
        except ValueError:
            said = f'"{text}"'
        sentences.append(f"{name}: {said}.")
    return " ".join(sentences)


def _say(value: Any) -> str:
    """A JSON value in words: `{"a": 1, "b": ["x", "y"]}` -> "a 1, b x and y"."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {_say(item)}" for key, item in value.items()) or "nothing"
    if isinstance(value, list):
        words = [_say(item) for item in value] or ["nothing"]
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return value if isinstance(value, str) else json.dumps(value)


# -- rule 2: tool calls -----------------------------------------------------------------------

def _calls(request: dict[str, Any], prompt: str) -> tuple[tuple[Call, ...], bool]:
    """The calls to make (maybe none), and whether they use the legacy `functions` API."""
    legacy = not request.get("tools") and bool(request.get("functions"))
    if legacy:
        tools, choice = request["functions"], request.get("function_call", "auto")
        forced_name = choice.get("name") if isinstance(choice, dict) else None
    else:
        tools = [t["function"] for t in request.get("tools") or [] if t.get("type") == "function"]
        choice = request.get("tool_choice", "auto")
        forced_name = (choice.get("function") or {}).get("name") \
            if isinstance(choice, dict) and choice.get("type") == "function" else None
    if not tools or choice == "none":
        return (), legacy
    if forced_name:
        ranked = [t for t in tools if t["name"] == forced_name]
        if not ranked:
            param = "function_call" if legacy else "tool_choice"
            raise RuleError(f"Invalid value for '{param}': function '{forced_name}' is not among "
                            f"the offered {'functions' if legacy else 'tools'}.", param)
    else:
        ranked = _ranked(tools, prompt)
    planned = [(tool["name"], args) for tool in ranked for args in _arguments(tool, prompt)]
    if not planned and (forced_name or choice == "required"):
        tool = (ranked or tools)[0]
        planned = [(tool["name"], args) for args in _arguments(tool, prompt, forced=True)]
    if legacy or request.get("parallel_tool_calls") is False:
        planned = planned[:1]
    digest = _digest(request)
    calls = tuple(Call("call_" + hashlib.sha256(f"{digest}:{i}".encode()).hexdigest()[:24],
                       name, json.dumps(args)) for i, (name, args) in enumerate(planned))
    return calls, legacy


def _words(text: str) -> set[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower()
    return {w for w in re.findall(r"[a-z]+", text) if len(w) >= 3 and w not in STOP_WORDS}


def _ranked(tools: list[dict[str, Any]], prompt: str) -> list[dict[str, Any]]:
    """Tools sharing a word with the prompt, most shared words first (ties keep their order)."""
    asked = _words(prompt)
    scores = [len(asked & (_words(t["name"]) | _words(t.get("description") or ""))) for t in tools]
    order = sorted(range(len(tools)), key=lambda i: -scores[i])
    return [tools[i] for i in order if scores[i] > 0]


def _kind(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind


def _arguments(tool: dict[str, Any], prompt: str, *, forced: bool = False) -> list[dict[str, Any]]:
    """One argument object per call of `tool` (several when the phrase lists places), or none."""
    parameters = tool.get("parameters") or {}
    properties: dict[str, Any] = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])
    numbers = _NUMBER.findall(prompt)
    parts = _phrase_parts(prompt) or ([prompt] if forced else [])
    fixed: dict[str, Any] = {}
    strings = []
    for name, schema in properties.items():
        kind = _kind(schema)
        value: object  # any JSON value (or None), depending on the branch
        if "enum" in schema:
            value = next((v for v in schema["enum"] if isinstance(v, str)
                          and re.search(rf"\b{re.escape(v)}\b", prompt, re.IGNORECASE)), None)
            value = schema["enum"][0] if value is None and name in required else value
        elif kind == "string":
            strings.append(name)
            continue
        elif kind in ("number", "integer"):
            value = _take_number(numbers, integer=kind == "integer")
        else:
            value = False if kind == "boolean" and name in required else None
        if value is None and name in required:
            if not forced:
                return []
            value = FALLBACKS.get(kind or "", "")
        if value is not None:
            fixed[name] = value
    if not strings:
        return [fixed]
    if not parts:
        return [] if required & set(strings) else [fixed]
    ordered = list(properties)
    return [dict(sorted({**fixed, **{n: part for n in strings}}.items(),
                        key=lambda item: ordered.index(item[0]))) for part in parts]


def _take_number(numbers: list[str], *, integer: bool) -> int | float | None:
    """Remove and return the next number (the next whole one for integers)."""
    for i, text in enumerate(numbers):
        if integer and "." in text:
            continue
        del numbers[i]
        return float(text) if "." in text else int(text)
    return None


def _phrase_parts(prompt: str) -> list[str]:
    """The phrase after the last preposition, split on " and " / ", "."""
    starts = list(_PREPOSITION.finditer(prompt))
    if not starts:
        return []
    match = re.match(r"[^.?!;:\n]*", prompt[starts[-1].end():])
    assert match is not None  # the pattern also matches the empty string
    phrase = match.group()
    parts = re.split(r",\s*(?:and\s+)?|\s+and\s+", phrase)
    return [p.strip(" " + QUOTES) for p in parts if p.strip(" " + QUOTES)]


# -- rule 3: plain answers --------------------------------------------------------------------

def _plain(prompt: str) -> tuple[str, str]:
    """(rule, answer text) for a message that calls no tool."""
    words = re.findall(r"[a-z]+", prompt.lower())
    if any(w.startswith("summar") for w in words):
        return "summary", _summary(prompt)
    translation = _translation(prompt)
    if translation is not None:
        return "translation", translation
    if words and words[0] in ("hello", "hi", "hey"):
        return "greeting", GREETING
    return "echo", f"You said: {prompt}"


def _summary(prompt: str) -> str:
    cut = re.search(r"[:\n]", prompt)
    text = prompt[cut.end():] if cut and prompt[cut.end():].strip() else prompt
    sentence = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0]
    return " ".join(sentence.split()[:30])


def _translation(prompt: str) -> str | None:
    """"[xx] text" for a translation request, None for any other message."""
    head, colon, tail = prompt.partition(":")
    match = _TRANSLATE.search(head) if colon and tail.strip() else None
    if match:
        text = tail
    else:
        match = _TRANSLATE.search(prompt)  # greedy: the last "to/into LANGUAGE" names the language
        if not match:
            return None
        text = match.group(1)
    language = match.group(2)
    return f"[{LANGUAGES.get(language.lower(), language)}] {text.strip().strip(QUOTES)}"


# -- usage and streaming ----------------------------------------------------------------------

def _usage(request: dict[str, Any], answer: Answer) -> dict[str, Any]:
    prompt = sum(_count(_text(m.get("content"))) for m in request["messages"])
    offered = request.get("tools") or request.get("functions")
    prompt += _count(json.dumps(offered)) if offered else 0
    completion = sum(_count(c.arguments) for c in answer.calls) or _count(answer.content or "")
    prompt, completion = max(prompt, 1), max(completion, 1)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _pieces(text: str, size: int = 3) -> list[str]:
    """`text` in pieces of `size` words, whitespace kept, so the pieces join back exactly."""
    words = re.findall(r"\s*\S+|\s+$", text)
    return ["".join(words[i:i + size]) for i in range(0, len(words), size)]


def _fragments(arguments: str) -> list[str]:
    """A JSON string cut into at most three fragments, as the API streams call arguments."""
    step = max(1, -(-len(arguments) // 3))
    return [arguments[i:i + step] for i in range(0, len(arguments), step)]
