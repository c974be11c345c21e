"""A batch's input file: its lines parsed and checked as OpenAI checks them.

Each line is `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`; a file
is refused whole (the batch `failed`, `errors.data` naming the line) if it is empty, holds more than
`max_lines` lines, or has a line that is not JSON, misses a member, repeats a `custom_id`, names
another method, URL or model than the rest, or whose body is not an object with a `model`. At most
100 errors are reported. Lines are read with `flowrunner._json.loads` (bounded nesting and numbers).
"""

from __future__ import annotations

from typing import Any

from flowrunner import _json
from flowrunner.testing import _rules

ENDPOINT = "/v1/chat/completions"
_MAX_REPORTED = 100  # errors.data entries for an invalid file


def batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    """A `BatchError`: what is wrong, and on which line (1-based) if a line is at fault."""
    return {"code": code, "message": message, "param": param, "line": line}


def parse(data: bytes, max_lines: int) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]], str | None]:
    """The (custom_id, body) pairs of an input file, its errors (`BatchError`s, at most 100), and
    the model its requests name."""
    texts = data.split(b"\n")
    if texts and not texts[-1].strip():
        texts.pop()
    if not texts:
        return [], [batch_error("empty_file", "The batch input file is empty.")], None
    if len(texts) > max_lines:
        return [], [batch_error("too_many_tasks", f"The batch input file has {len(texts)} requests; a batch "
                           f"holds at most {max_lines}.")], None
    lines: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    for number, raw in enumerate(texts, 1):
        if len(errors) >= _MAX_REPORTED:
            break
        try:
            item = _json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, _json.JSONError):
            errors.append(batch_error("invalid_json_line", "This line is not parseable as valid JSON.", number))
            continue
        problem = _line_problem(item, seen, model)
        if problem is not None:
            errors.append(batch_error(problem[0], problem[1], number, problem[2]))
            continue
        seen.add(item["custom_id"])
        model = model or item["body"]["model"]
        lines.append((item["custom_id"], item["body"]))
    return (lines, errors, model) if not errors else ([], errors, model)


def _line_problem(item: Any, seen: set[str], model: str | None) -> tuple[str, str, str | None] | None:
    """(code, message, param) for what is wrong with one parsed input line, else None."""
    if not isinstance(item, dict):
        return "invalid_request", "Each line must be a JSON object.", None
    for name in ("custom_id", "method", "url", "body"):
        if name not in item:
            return "missing_required_parameter", f"Missing required parameter: '{name}'.", name
    if not isinstance(item["custom_id"], str) or not item["custom_id"]:
        return "invalid_custom_id", "'custom_id' must be a non-empty string.", "custom_id"
    if item["custom_id"] in seen:
        return ("duplicate_custom_id", "The custom_id for this request is a duplicate of another "
                "request. The custom_id parameter must be unique for each request in a batch.", "custom_id")
    if item["method"] != "POST":
        return "invalid_method", f"Invalid method {str(item['method'])[:20]!r}: only POST is supported.", "method"
    if item["url"] != ENDPOINT:
        return ("url_mismatch", f"The URL {str(item['url'])[:100]!r} of this request does not match the "
                f"batch's endpoint {ENDPOINT!r}.", "url")
    body = item["body"]
    if not isinstance(body, dict):
        return "invalid_request", "'body' must be a JSON object: the request to send.", "body"
    if not isinstance(body.get("model"), str):
        return "missing_required_parameter", "Missing required parameter: 'body.model'.", "body.model"
    if model is not None and body["model"] != model:
        return ("model_mismatch", f"The model {body['model'][:100]!r} of this request differs from "
                f"{model!r}, the model of the batch's other requests: a batch runs one model.", "body.model")
    return None


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt's tokens as the rules count them (words), for the enqueued-token limit."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 1
    words = sum(_rules._count(_rules._text(m.get("content")) if isinstance(m, dict) else "") for m in messages)
    return max(1, words)
