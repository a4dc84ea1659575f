"""Locust users that talk to an OpenAI-compatible endpoint the way chat clients do.

Prompt and reply lengths are log-normal (medians 512 and 200 tokens, as load/traces use), replies are
forced to that length with vLLM's `ignore_eos`, and a third of the requests stream. Run it headless
against the simulated fleet, bounded in time:

    locust -f load/locustfile.py --headless -u 8 -r 4 -t 60s --host http://127.0.0.1:8000

Environment: LOCUST_MODEL (qwen), LOCUST_PROMPT_MEDIAN (512), LOCUST_OUTPUT_MEDIAN (200),
LOCUST_MAX_TOTAL (4096), LOCUST_STREAM_SHARE (0.33).
"""

from __future__ import annotations

import json
import math
import os
import random
from urllib.parse import urlparse

from locust import HttpUser, between, events, task
from locust.env import Environment

MODEL = os.environ.get("LOCUST_MODEL", "qwen")
PROMPT_MEDIAN = float(os.environ.get("LOCUST_PROMPT_MEDIAN", "512"))
OUTPUT_MEDIAN = float(os.environ.get("LOCUST_OUTPUT_MEDIAN", "200"))
MAX_TOTAL = int(os.environ.get("LOCUST_MAX_TOTAL", "4096"))
STREAM_SHARE = float(os.environ.get("LOCUST_STREAM_SHARE", "0.33"))
WORDS = ("colour", "light", "shadow", "river", "stone", "song", "morning", "ember", "tide", "field")


@events.test_start.add_listener
def loopback_only(environment: Environment, **_kwargs: object) -> None:
    host = urlparse(environment.host or "").hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"locustfile: refusing host {environment.host!r}: this drives the simulated fleet only")


def lognormal(rng: random.Random, median: float, sigma: float, cap: int) -> int:
    return max(1, min(cap, round(rng.lognormvariate(math.log(median), sigma))))


def prompt_of(tokens: int, rng: random.Random) -> str:
    """About four characters per token, as the simulator counts them."""
    words = []
    while sum(len(w) + 1 for w in words) < tokens * 4:
        words.append(rng.choice(WORDS))
    return " ".join(words)


class ChatUser(HttpUser):
    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def chat(self) -> None:
        prompt = lognormal(self.rng, PROMPT_MEDIAN, 1.0, MAX_TOTAL - 1)
        output = lognormal(self.rng, OUTPUT_MEDIAN, 0.8, MAX_TOTAL - prompt - 16)
        stream = self.rng.random() < STREAM_SHARE
        body = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": prompt_of(prompt, self.rng)},
            ],
            "max_tokens": max(1, output),
            "ignore_eos": True,
            "stream": stream,
        }
        name = "/v1/chat/completions" + (" [stream]" if stream else "")
        with self.client.post("/v1/chat/completions", json=body, name=name, stream=stream, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
            elif stream:
                lines = [line for line in r.iter_lines() if line]
                if not lines or lines[-1] != b"data: [DONE]":
                    r.failure("stream did not end with [DONE]")
            elif not json.loads(r.content).get("choices"):
                r.failure("no choices in the reply")
