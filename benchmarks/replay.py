"""Replay speed: a cassette of 1,000 interactions opened, every request matched, closed.

    python benchmarks/replay.py [--runs 500] [--scan 200] [--repeat 5]

Records a cassette by running `flows/weather.yaml` (two requests per run) for `--runs` different
questions against the project's test server on 127.0.0.1, with recording on, into a temporary
folder (deleted at the end). Then, on that cassette:
- end to end, in three parts: `use_cassette(path, "none")` entered (the file read, parsed,
  checked, scrubbed and indexed: "load"), every recorded request, rebuilt fresh (no cached
  canonical body) and in shuffled order, looked up and played as vcrpy's HTTP stubs do
  (`can_play_response_for`, then `play_response`: "match"), and the block left ("close");
  the median of `--repeat` rounds, each on a fresh cassette object;
- loading with vcrpy's own `Cassette` and YAML serializer (vcrpy's loader, its deep copies),
  the same filters: what loading cost before flowrunner read cassettes itself;
- matching alone with vcrpy's own `Cassette` and our canonical-JSON matcher, and with vcrpy's
  built-in `body` matcher, for the first `--scan` interactions only (they scan, so they grow
  with the square of the size);
- every run replayed through the engine and the SDK with record mode `none` (cassette loading
  included).
Goal: a 1,000-interaction cassette replayed end to end (load, match, close) in under 0.5 s.
Left out of every figure: importing vcrpy and the SDK (done once per process, before timing).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def fresh(request: Any) -> Any:
    from vcr.request import Request

    return Request(request.method, request.uri, request.body, dict(request.headers))


def shuffled_requests(path: Path) -> list[Any]:
    """Every recorded request of the cassette at `path`, rebuilt fresh, in a shuffled order."""
    from flowrunner import use_cassette

    with use_cassette(path, "none") as cassette:
        requests = [fresh(request) for request in cassette.requests]
    random.Random(1).shuffle(requests)
    return requests


def time_end_to_end(path: Path, requests: list[Any]) -> tuple[float, float, float]:
    """Seconds to open the cassette, to play every request once, to close it."""
    from flowrunner import use_cassette

    start = time.perf_counter()
    block = use_cassette(path, "none")
    cassette = block.__enter__()
    loaded = time.perf_counter()
    for request in requests:
        assert cassette.can_play_response_for(request)
        cassette.play_response(request)
    matched = time.perf_counter()
    block.__exit__(None, None, None)
    closed = time.perf_counter()
    return loaded - start, matched - loaded, closed - matched


def time_vcrpy_load(path: Path) -> float:
    """Seconds to open the cassette with vcrpy's Cassette and YAML serializer and use_cassette's filters."""
    import vcr

    from flowrunner._cassette import _scrub_request, _scrub_response

    recorder = vcr.VCR(record_mode="none", match_on=["method", "path", "body"],
                       before_record_request=_scrub_request, before_record_response=_scrub_response,
                       decode_compressed_response=True)
    start = time.perf_counter()
    with recorder.use_cassette(str(path)):
        loaded = time.perf_counter()
    return loaded - start


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
    parser.add_argument("--repeat", type=int, default=5, help="end-to-end rounds (the median is shown)")
    args = parser.parse_args()

    import os

    from vcr.cassette import Cassette

    from flowrunner import Engine, OpenAITransport, load_flow, use_cassette
    from flowrunner.testing import ChatServer

    flow = load_flow(ROOT / "flows" / "weather.yaml")
    questions = [f"What's the weather in city{n}?" for n in range(args.runs)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weather.yaml"
        with ChatServer() as server, use_cassette(path, "all"):
            engine = Engine(OpenAITransport(base_url=server.base_url))
            live = [engine.run(flow, {"question": q}).outputs for q in questions]
        size = path.stat().st_size
        count = 2 * args.runs

        # Fresh requests every round: a request caches its match key, as a live one would once.
        rounds = [time_end_to_end(path, shuffled_requests(path)) for _ in range(args.repeat)]
        load, match, close = (statistics.median(part) for part in zip(*rounds))
        total = statistics.median(sum(parts) for parts in rounds)
        rows = [("load: use_cassette entered (read, parse, check, index)", count, load),
                ("match: every request looked up and played", count, match),
                ("close: use_cassette left", count, close),
                ("end to end: load + match + close", count, total),
                ("load with vcrpy's Cassette and YAML serializer (before)", count,
                 statistics.median(time_vcrpy_load(path) for _ in range(args.repeat)))]
        n, seconds = time_matching(Cassette, path, ("method", "path", "json_body"), args.scan)
        rows.append(("matching, vcrpy Cassette + canonical-JSON matcher", n, seconds))
        n, seconds = time_matching(Cassette, path, ("method", "path", "body"), args.scan)
        rows.append(("matching, vcrpy Cassette + built-in body matcher", n, seconds))

        order = list(range(args.runs))
        random.Random(2).shuffle(order)
        start = time.perf_counter()
        with use_cassette(path, "none"):
            engine = Engine(OpenAITransport())
            for i in order:
                assert engine.run(flow, {"question": questions[i]}).outputs == live[i]
        rows.append(("engine + SDK + cassette, every run replayed, shuffled", count, time.perf_counter() - start))

    print(f"python {sys.version.split()[0]}; cassette of {count} interactions, {size / 1e6:.1f} MB; "
          f"median of {args.repeat} rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'what':58} {'interactions':>12} {'seconds':>9} {'per request':>12}")
    for name, n, seconds in rows:
        print(f"{name:58} {n:12} {seconds:9.3f} {seconds / n * 1000:9.3f} ms")
    verdict = "met" if total < 0.5 else "missed"
    print(f"goal: {count:,} interactions replayed end to end (load, match, close) in < 0.5 s: "
          f"{verdict if count >= 1000 else 'n/a'}")


if __name__ == "__main__":
    main()
