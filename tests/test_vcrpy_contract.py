"""What flowrunner takes from vcrpy beyond its documented API, checked so that a vcrpy release that moves
it fails here, loudly and by name, rather than as a wrong replay somewhere else.

`_cassette.IndexedCassette` subclasses vcrpy's `Cassette` and overrides the places it scans every
recording (`__contains__`, `play_response`, saving in record mode `all` through
`_rerecorded_interactions`) and reading a file (`_load`, whose recordings it takes without vcrpy's
copies), reading the private state vcrpy keeps for them. pyproject.toml bounds
vcrpy to the major version these were read from and tested with (9); a new major version has to pass
this file before the bound moves.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest

vcr_cassette = pytest.importorskip("vcr.cassette")

# The Cassette state the override reads or writes, as vcrpy 9 keeps it.
STATE = ("data", "play_counts", "_played_interactions", "_loaded_count", "_path", "_before_record_request",
         "allow_playback_repeats", "drop_unused_requests")
# The methods the override replaces or calls, and what it expects vcrpy itself to call them from.
OVERRIDDEN = ("append", "__contains__", "play_response", "rewind", "_rerecorded_interactions", "_load",
              "can_play_response_for")


def test_vcrpy_is_the_major_version_flowrunner_was_built_against():
    major = int(version("vcrpy").split(".")[0])
    assert major == 9, (f"vcrpy {version('vcrpy')} is installed; flowrunner's IndexedCassette was written against "
                        "vcrpy 9's private Cassette state: check this file's tests before moving the bound in pyproject.toml")


def test_a_cassette_keeps_the_state_the_indexed_cassette_reads(tmp_path):
    cassette = vcr_cassette.Cassette(str(tmp_path / "c.yaml"))
    missing = [name for name in STATE if not hasattr(cassette, name)]
    assert not missing, f"vcrpy's Cassette no longer has {missing}: _cassette.IndexedCassette reads them"
    assert cassette.data == [] and cassette._loaded_count == 0 and cassette._played_interactions == []


def test_the_methods_the_indexed_cassette_overrides_are_still_vcrpys_own():
    cassette = vcr_cassette.Cassette
    missing = [name for name in OVERRIDDEN if not callable(getattr(cassette, name, None))]
    assert not missing, f"vcrpy's Cassette no longer has {missing}: _cassette.IndexedCassette overrides them"
    assert isinstance(inspect.getattr_static(cassette, "use"), classmethod)  # Cassette.use(**config) builds cls
    # Saving in record mode `all` goes through _rerecorded_interactions, and playing marks loaded
    # recordings in _played_interactions (for drop_unused_requests): the override keeps both.
    source = inspect.getsource(cassette)
    assert "self._rerecorded_interactions()" in source
    assert "_played_interactions.append" in inspect.getsource(cassette.play_response)
    # Reading a file appends each recording through self.append (the override takes those without
    # vcrpy's copies), then counts them as loaded; whether a request can play asks for the same
    # record mode and rewound state the override checks.
    load = inspect.getsource(cassette._load)
    assert "self.append(request, response)" in load and "self._loaded_count = len(self.data)" in load
    can_play = inspect.getsource(cassette.can_play_response_for)
    assert "request in self" in can_play and "RecordMode.ALL" in can_play and "self.rewound" in can_play


def test_the_indexed_cassette_replays_oldest_first_and_each_recording_once(tmp_path):
    """The behaviour the override must keep, through vcrpy's own request type."""
    from vcr.request import Request

    from flowrunner._cassette import indexed_cassette_class

    cassette = indexed_cassette_class()(str(tmp_path / "c.yaml"), record_mode="all")
    first = Request("POST", "http://h/v1/chat/completions", '{"a": 1}', {})
    cassette.append(first, {"status": {"code": 200}, "body": {"string": "one"}})
    cassette.append(first, {"status": {"code": 200}, "body": {"string": "two"}})
    assert first in cassette
    assert [cassette.play_response(first)["body"]["string"] for _ in range(2)] == ["one", "two"]
    assert first not in cassette
