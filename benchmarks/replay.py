"""Replay speed: matching requests against a cassette of 1,000 interactions.

    python benchmarks/replay.py [--runs 500] [--scan 200]

Records a cassette by running `flows/weather.yaml` (two requests per run) for `--runs` different
questions against the project's test server on 127.0.0.1, with recording on, into a temporary
folder (deleted at the end). Then, on that cassette:
- matching alone: every recorded request, rebuilt fresh (no cached canonical body) and in shuffled
  order, is looked up and played as vcrpy's HTTP stubs do (`can_play_response_for`, then
  `play_response`), with flowrunner's `IndexedCassette`; and, for the first `--scan`
  interactions only (they scan, so they grow with the square of the size), with vcrpy's own
  `Cassette` and our canonical-JSON matcher, and with vcrpy's built-in `body` matcher;
- end to end: every run replayed through the engine and the SDK with record mode `none`.
Goal: matching 1,000 interactions in under 1 s.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def fresh(request: Any) -> Any:
    from vcr.request import Request

    return Request(request.method, request.uri, request.body, dict(request.headers))


def time_matching(cassette_class: type[Any], path: Path, match_on: tuple[str, ...], limit: int | None) -> tuple[int, float]:
    """Load the cassette (its first `limit` interactions), then play every request once, shuffled."""
    import vcr

    from flowrunner._cassette import json_body_matcher

    recorder = vcr.VCR(record_mode="none", match_on=list(match_on))
    recorder.register_matcher("json_body", json_body_matcher)
    config = recorder.get_merged_config(path=str(path))
    config.pop("path_transformer"), config.pop("func_path_generator"), config.pop("record_on_exception")
    cassette = cassette_class.load(**config)
    if limit is not None and limit < len(cassette.data):
        keep = cassette.data[:limit]
        cassette = cassette_class(**config)
        for request, response in keep:
            cassette.append(request, response)
        cassette.rewound = True
    requests = [fresh(request) for request in cassette.requests]
    random.Random(1).shuffle(requests)
    start = time.perf_counter()
    for request in requests:
        assert cassette.can_play_response_for(request)
        cassette.play_response(request)
    return len(requests), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500, help="weather runs to record (2 interactions each)")
    parser.add_argument("--scan", type=int, default=200, help="interactions for the scanning baselines")
    args = parser.parse_args()

    from vcr.cassette import Cassette

    from flowrunner import Engine, OpenAITransport, load_flow, use_cassette
    from flowrunner._cassette import indexed_cassette_class
    from flowrunner.testing import ChatServer

    flow = load_flow(ROOT / "flows" / "weather.yaml")
    questions = [f"What's the weather in city{n}?" for n in range(args.runs)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weather.yaml"
        with ChatServer() as server, use_cassette(path, "all"):
            engine = Engine(OpenAITransport(base_url=server.base_url))
            live = [engine.run(flow, {"question": q}).outputs for q in questions]
        size = path.stat().st_size

        rows = []
        n, seconds = time_matching(indexed_cassette_class(), path, ("method", "path", "json_body"), None)
        rows.append((f"matching, IndexedCassette (flowrunner)", n, seconds))
        n, seconds = time_matching(Cassette, path, ("method", "path", "json_body"), args.scan)
        rows.append((f"matching, vcrpy Cassette + canonical-JSON matcher", n, seconds))
        n, seconds = time_matching(Cassette, path, ("method", "path", "body"), args.scan)
        rows.append((f"matching, vcrpy Cassette + built-in body matcher", n, seconds))

        order = list(range(args.runs))
        random.Random(2).shuffle(order)
        start = time.perf_counter()
        with use_cassette(path, "none"):
            engine = Engine(OpenAITransport())
            for i in order:
                assert engine.run(flow, {"question": questions[i]}).outputs == live[i]
        rows.append(("end to end: engine + SDK + cassette, shuffled runs", 2 * args.runs, time.perf_counter() - start))

    print(f"python {sys.version.split()[0]}; cassette of {2 * args.runs} interactions, {size / 1e6:.1f} MB")
    print(f"{'what':55} {'interactions':>12} {'seconds':>9} {'per request':>12}")
    for name, count, seconds in rows:
        print(f"{name:55} {count:12} {seconds:9.3f} {seconds / count * 1000:9.3f} ms")
    verdict = "met" if rows[0][1] >= 1000 and rows[0][2] < 1.0 else "missed" if rows[0][1] >= 1000 else "n/a"
    print(f"goal: matching 1,000 interactions in < 1 s: {verdict}")


if __name__ == "__main__":
    main()
