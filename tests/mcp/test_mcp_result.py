"""An MCP tool's result as kept and as sent to the model: text joined, others summarised, all bounded."""

from __future__ import annotations

from flowrunner.mcp._result import MAX_RESULT_CHARS, compact_result, model_value


def test_text_parts_are_joined_and_other_content_summarised():
    kept = compact_result({"content": [
        {"type": "text", "text": "first"},
        {"type": "image", "data": "A" * 4000, "mimeType": "image/png"},
        {"type": "resource_link", "uri": "file:///a.txt", "name": "a"},
        {"type": "resource", "resource": {"uri": "file:///b.txt", "text": "inline text"}},
        {"type": "resource", "resource": {"uri": "file:///c.bin", "blob": "AAAA", "mimeType": "application/zip"}},
    ], "isError": False})
    assert kept == {"text": "first\n[image: image/png, about 3000 bytes, not shown]\n[resource: file:///a.txt]\n"
                            "inline text\n[resource: file:///c.bin, application/zip, not shown]", "is_error": False}
    assert model_value(kept) == kept["text"]


def test_structured_content_goes_to_the_model_with_sorted_keys():
    kept = compact_result({"content": [{"type": "text", "text": "{}"}], "structuredContent": {"b": 1, "a": {"d": 2, "c": 3}}})
    assert list(model_value(kept)) == ["a", "b"] and list(model_value(kept)["a"]) == ["c", "d"]


def test_huge_results_are_cut_once_with_their_true_size():
    kept = compact_result({"content": [{"type": "text", "text": "x" * (MAX_RESULT_CHARS - 10)},
                                       {"type": "text", "text": "y" * 50},
                                       {"type": "text", "text": "z" * 3 * MAX_RESULT_CHARS}],
                           "structuredContent": {"big": "s" * (MAX_RESULT_CHARS + 1)}, "isError": True})
    total = (MAX_RESULT_CHARS - 10) + 50 + 3 * MAX_RESULT_CHARS + 2
    assert kept["text"] == ("x" * (MAX_RESULT_CHARS - 10) + "\n" + "y" * 9 + f"\n[cut by flowrunner: the result was "
                            f"{total} characters, at most {MAX_RESULT_CHARS} are passed on]")
    assert "structured" not in kept and kept["structured_omitted_chars"] == MAX_RESULT_CHARS + 12
    assert kept["is_error"] is True
