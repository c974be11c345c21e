"""Shared fixtures: the project's OpenAI-compatible test server, and paths into the repository."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest in temporary projects

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
DATA = Path(__file__).resolve().parent / "data"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without OPENAI_API_KEY and OPENAI_BASE_URL (a newcomer's: no key,
    no server), plus `extra`, for flowrun subprocesses."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    return {**env, **extra}


@pytest.fixture
def chat_server() -> Iterator["ChatServer"]:  # noqa: F821
    """A fresh test server on 127.0.0.1 with a free port; its `requests` list shows what was sent."""
    from flowrunner.testing import ChatServer

    with ChatServer() as server:
        yield server


@pytest.fixture
def make_flow(tmp_path: Path):
    """Write a flow (and optionally a `tools.py` beside it) into a temporary folder and load it."""
    import textwrap

    from flowrunner import load_flow

    counter = iter(range(1000))

    def make(yaml_text: str, tools: str | None = None, name: str | None = None):
        folder = tmp_path / f"flow{next(counter)}"
        folder.mkdir()
        if tools is not None:
            # A module name unique to this flow: sys.modules caches modules by name across tests.
            module = f"tools_{folder.name}_{abs(hash(str(tmp_path))) % 10**8}"
            (folder / f"{module}.py").write_text(textwrap.dedent(tools))
            yaml_text = yaml_text.replace("entry: tools:", f"entry: {module}:")
        path = folder / f"{name or 'flow'}.yaml"
        path.write_text(textwrap.dedent(yaml_text))
        return load_flow(path)

    return make


@pytest.fixture(autouse=True)
def _history_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's run history (on by default for `flowrun run` and `chat`) goes to a folder of its own,
    never into the user's; flowrun subprocesses inherit FLOWRUN_HOME from the environment."""
    home = tmp_path_factory.mktemp("flowrun-home")
    monkeypatch.setenv("FLOWRUN_HOME", str(home))
    monkeypatch.delenv("FLOWRUN_NO_LOG", raising=False)
    return home


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets are process-wide (like the environment they come from): each test starts with none."""
    yield
    from flowrunner._secrets import forget_all

    forget_all()
