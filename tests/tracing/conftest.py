"""The `otlp` fixture: an OTLP/HTTP receiver on 127.0.0.1 (see otlp_receiver.py)."""

from __future__ import annotations

from typing import Iterator

import pytest
from otlp_receiver import OTLPReceiver


@pytest.fixture
def otlp() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver
