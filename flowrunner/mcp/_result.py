"""An MCP tool's result, as kept (recorded in the record and the cassette) and as sent to the model.

What is kept is bounded: text cut at `MAX_RESULT_CHARS`, images, audio and embedded blobs summarised
(their kind, type and size, never their bytes), so a huge or binary result cannot swell the run record,
the cassette or the conversation.
"""

from __future__ import annotations

import json
from typing import Any

MAX_RESULT_CHARS = 100_000
"""The most characters of a tool's result the model is sent (text parts together, or the structured JSON)."""


def _summary(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind in ("image", "audio"):
        data = block.get("data")
        size = len(data) * 3 // 4 if isinstance(data, str) else 0
        return f"[{kind}: {block.get('mimeType', 'unknown type')}, about {size} bytes, not shown]"
    if kind == "resource_link":
        return f"[resource: {block.get('uri', '?')}]"
    if kind == "resource":
        found = block.get("resource")
        resource: dict[str, Any] = found if isinstance(found, dict) else {}
        if isinstance(resource.get("text"), str):
            return str(resource["text"])
        return f"[resource: {resource.get('uri', '?')}, {resource.get('mimeType', 'binary')}, not shown]"
    return f"[{kind if isinstance(kind, str) else 'unknown'} content, not shown]"


def compact_result(raw: dict[str, Any]) -> dict[str, Any]:
    """A CallToolResult (as JSON data) reduced to what flowrunner keeps: `text` (the text parts joined,
    others summarised, cut), `structured` (structuredContent, when its JSON fits the bound) and `is_error`."""
    parts: list[str] = []
    lengths: list[int] = []
    kept_chars = 0
    for block in raw.get("content") or []:
        if not isinstance(block, dict):
            continue
        piece = block.get("text") if block.get("type") == "text" and isinstance(block.get("text"), str) \
            else _summary(block)
        piece = str(piece)
        lengths.append(len(piece))
        if kept_chars <= MAX_RESULT_CHARS:  # past the bound, only lengths are counted
            parts.append(piece[:MAX_RESULT_CHARS + 1])
            kept_chars += len(parts[-1]) + 1
    total = sum(lengths) + max(len(lengths) - 1, 0)  # the whole text's length, joined by newlines
    text = "\n".join(parts)[:MAX_RESULT_CHARS]
    if total > MAX_RESULT_CHARS:
        text += f"\n[cut by flowrunner: the result was {total} characters, at most {MAX_RESULT_CHARS} are passed on]"
    kept: dict[str, Any] = {"text": text}
    structured = raw.get("structuredContent")
    if structured is not None:
        size = len(json.dumps(structured, ensure_ascii=False))
        if size <= MAX_RESULT_CHARS:
            kept["structured"] = structured
        else:
            kept["structured_omitted_chars"] = size
    kept["is_error"] = bool(raw.get("isError"))
    return kept


def model_value(kept: dict[str, Any]) -> Any:
    """What the model is sent for a successful call (a string, or JSON data the engine encodes):
    the structured content when there is some (its keys sorted), else the text."""
    if "structured" in kept:  # keys sorted: a cassette (YAML) keeps no order, and a replay must send the same
        return json.loads(json.dumps(kept["structured"], sort_keys=True))
    return kept.get("text", "")
