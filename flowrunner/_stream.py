"""Server-sent events of a streamed chat completion, folded back into one completion.

A stream sends the message in pieces: content fragments, tool calls whose `arguments` arrive in
fragments keyed by `index`, and (with `stream_options.include_usage`) a last chunk with no choices
and the usage. The engine handles one shape only, so the stream becomes a `chat.completion` dict.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator


class StreamFormatError(ValueError):
    """An event whose data is not JSON, or a stream that ended without [DONE] or any chunk."""


def iter_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payload of each `data:` event, until `data: [DONE]`."""
    data: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == "[DONE]":
                    return
                yield _decode(payload)
            continue
        if line.startswith(":"):
            continue  # SSE comment, used by some servers as a keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        payload = "\n".join(data)
        if payload.strip() != "[DONE]":
            yield _decode(payload)


def _decode(payload: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except json.JSONDecodeError:
        raise StreamFormatError(f"a stream event is not JSON: {payload[:200]!r}") from None
    if not isinstance(event, dict):
        raise StreamFormatError(f"a stream event is not a JSON object: {payload[:200]!r}")
    return event


def accumulate(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One `chat.completion` dict built from `chat.completion.chunk` dicts (first choice only)."""
    try:
        return _fold(chunks)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        if isinstance(exc, StreamFormatError):
            raise
        raise StreamFormatError(f"a stream chunk is not shaped like a chat.completion.chunk ({exc})") from None


def _fold(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    completion: dict[str, Any] = {"object": "chat.completion"}
    content: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    legacy_call: dict[str, str] | None = None
    role = "assistant"
    finish_reason = None
    seen = False
    for chunk in chunks:
        seen = True
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                completion[key] = chunk[key]
        if chunk.get("usage"):
            completion["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            role = delta.get("role") or role
            if delta.get("content"):
                content.append(delta["content"])
            if delta.get("refusal"):
                refusal.append(delta["refusal"])
            for part in delta.get("tool_calls") or []:
                call = calls.setdefault(part.get("index", len(calls)),
                                        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                if part.get("id"):
                    call["id"] = part["id"]
                function = part.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
            if delta.get("function_call"):
                legacy_call = legacy_call or {"name": "", "arguments": ""}
                legacy_call["name"] += delta["function_call"].get("name") or ""
                legacy_call["arguments"] += delta["function_call"].get("arguments") or ""
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
    if not seen:
        raise StreamFormatError("the stream ended before any chunk arrived")
    message: dict[str, Any] = {"role": role, "content": "".join(content) if content else None}
    if refusal:
        message["refusal"] = "".join(refusal)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    if legacy_call:
        message["function_call"] = legacy_call
    completion["choices"] = [{"index": 0, "message": message, "finish_reason": finish_reason}]
    return completion
