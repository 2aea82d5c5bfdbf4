"""The fake OpenAI upstream (tests/support/fake_openai.py) as a process of its own, paced for a run."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from tests.support.fake_openai import Behaviour, FakeOpenAI


def reply_of(tokens: int) -> str:
    """A reply the fake sends as exactly `tokens` content chunks."""
    return " ".join(f"word{i}" for i in range(tokens))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tokens", type=int, default=50)
    p.add_argument("--ttft-ms", type=float, default=200.0)
    p.add_argument("--gap-ms", type=float, default=40.0)
    args = p.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with FakeOpenAI(port=args.port) as fake:
        fake.behaviour = Behaviour(
            reply=reply_of(args.tokens), ttft_s=args.ttft_ms / 1000, gap_s=args.gap_ms / 1000
        )
        sys.stdout.write(f"fake upstream on {fake.url}\n")
        sys.stdout.flush()
        # Bounded: the orchestrator stops it; a forgotten one still exits after an hour.
        stop.wait(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
