"""A chat's history as a flow's `messages:` list (YAML), ready to paste under a step.

Only what a flow message can hold is kept (role, text content, name); function calls and their
results are left out, and `{{`, `{%`, `{#` in the text are wrapped in `{% raw %}` so the saved
words are sent as they are, not read as templates.
"""

from __future__ import annotations

from typing import Any

import yaml

_TEMPLATE_MARKS = ("{{", "{%", "{#")


def flow_messages(history: list[dict[str, Any]]) -> tuple[list[dict[str, str]], int]:
    """The messages a flow can hold, and how many others (function calls, their results) were left out."""
    kept: list[dict[str, str]] = []
    for message in history:
        content = message.get("content")
        if message.get("role") not in ("system", "developer", "user", "assistant") or not isinstance(content, str) \
                or message.get("tool_calls") or message.get("function_call"):
            continue
        if any(mark in content for mark in _TEMPLATE_MARKS):
            content = "{% raw %}" + content.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}") \
                + "{% endraw %}"
        entry = {"role": message["role"], "content": content}
        if isinstance(message.get("name"), str):
            entry["name"] = message["name"]
        kept.append(entry)
    return kept, len(history) - len(kept)


class _Dumper(yaml.SafeDumper):
    """Block style; text with line breaks as a `|` block, as a person would write it."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(c in value for c in "\r\t\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def messages_yaml(history: list[dict[str, Any]], source: str) -> str:
    """The history as `messages:` YAML, headed by a comment saying where it came from and what was left out."""
    messages, left_out = flow_messages(history)
    note = f"; {left_out} function call message(s) left out" if left_out else ""
    body = yaml.dump({"messages": messages}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)
    return f"# saved from `{source}`{note}: paste under a step\n{body}"
