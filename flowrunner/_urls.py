"""Checking a server's base URL before anything is sent to it.

The SDK takes `127.0.0.1:8000/v1` (no scheme) and every request then fails as a network error,
retried for seconds; a URL that cannot work is refused at once, with the URL it most likely means.
"""

from __future__ import annotations

import os
import re

from ._exceptions import ConfigError
from ._secrets import redact_url, register_url

_LOCAL = re.compile(r"^(localhost|127\.[\d.]+|0\.0\.0\.0|\[::1\]|host\.docker\.internal)(:\d+)?(/|$)", re.I)


def check_base_url(url: str | None) -> None:
    """Raise ConfigError unless `url` (else $OPENAI_BASE_URL, which the SDK reads) is an http(s) URL with a host."""
    origin = "--base-url"
    if url is None:
        url, origin = os.environ.get("OPENAI_BASE_URL") or None, "$OPENAI_BASE_URL"
    elif url == os.environ.get("OPENAI_BASE_URL"):
        origin = "$OPENAI_BASE_URL"  # the CLI's --base-url defaults to it
    if url is None:
        return
    scheme, sep, rest = url.strip().partition("://")
    if sep and scheme.lower() in ("http", "https") and rest and not rest.startswith("/"):
        return
    register_url(url)  # a password in it stays out of the message
    fixed = redact_url(suggest(url))
    how = f"export OPENAI_BASE_URL={fixed}" if origin == "$OPENAI_BASE_URL" else f"--base-url {fixed}"
    raise ConfigError(f"{origin} {redact_url(url)!r} is not an http:// or https:// URL, so no request was sent\n"
                      f"  hint: {how}")


def suggest(url: str) -> str:
    """The http(s) URL `url` most likely means: http:// for this machine, https:// for any other host."""
    rest = url.strip()
    scheme, sep, after = rest.partition("://")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        rest = after
    else:
        rest = re.sub(r"^(https?:/*|https?//+|/+)", "", rest, flags=re.I)  # `http:/host`, `http//host`, `//host`
    return ("http://" if _LOCAL.match(rest) else "https://") + rest
