"""The OpenAI-compatible server, driven over real HTTP: the official openai client in both modes,
4xx answers that leave it healthy, the bounded queue, disconnects, timeouts and /metrics."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from openai import OpenAI

from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.sampling import SamplingParams
from orin_unlearn.edge.server import create_app
from orin_unlearn.edge.tokenizer import ChatTokenizer
from tests.edge.fakes import SlowBabbler

MODEL = "tiny-test"
QUESTION = [{"role": "user", "content": "Recommend a film from the comedy genre."}]


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Run `app` with uvicorn on a free loopback port in a thread; yield its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture(scope="module")
def client(url):
    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def slow_app(onnx_dir, delay: float = 0.05, **options):
    tok = ChatTokenizer(onnx_dir)
    backend = SlowBabbler(tok.encode("film")[0], tok.vocab_size, max_context=512, delay=delay)
    return create_app(Generator(backend, tok), MODEL, **options), backend


def test_openai_client_round_trip(client, generator):
    assert [m.id for m in client.models.list().data] == [MODEL]
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION)
    expected = generator.generate(QUESTION, SamplingParams(max_new_tokens=128))
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.completion_tokens == expected.completion_tokens
    assert reply.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens


def test_openai_client_streaming(client, generator):
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = generator.generate(QUESTION, SamplingParams(max_new_tokens=128))
    assert text == expected.text
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # really streamed
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens


def test_sampling_parameters_reach_the_generator(client):
    def ask(seed: int) -> list[str]:
        replies = []
        for mood in ("funny", "scary", "mind-bending"):
            messages = [{"role": "user", "content": f"I'm in the mood for something {mood}."}]
            reply = client.chat.completions.create(
                model=MODEL, messages=messages, temperature=2.0, seed=seed, max_tokens=12, stop=["zzz"]
            )
            replies.append(reply.choices[0].message.content)
        return replies

    assert ask(3) == ask(3)
    assert ask(3) != ask(4)
    short = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2


BAD = [
    ("{not json", 400, "invalid_json"),
    ('{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}', 404, "model_not_found"),
    (f'{{"model": "{MODEL}", "messages": []}}', 400, "invalid_request"),
    (f'{{"model": "{MODEL}", "messages": [{{"role": "robot", "content": "hi"}}]}}', 400, "invalid_request"),
    (
        f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "hi"}}], "temperature": 9}}',
        400,
        None,
    ),
    (
        f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "hi"}}], "max_tokens": 0}}',
        400,
        None,
    ),
    (f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "hi"}}], "n": 2}}', 400, None),
    (
        f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "hi"}}], "stop": ["", "x"]}}',
        400,
        None,
    ),
    (
        f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "{"film " * 1500}"}}]}}',
        400,
        "context_length_exceeded",
    ),
    ("[1, 2]", 400, "invalid_request"),
]


@pytest.mark.parametrize("body,status,code", BAD)
def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(url, client, body, status, code):
    r = httpx.post(f"{url}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and (code is None or error["code"] == code)
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    assert (
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
        .choices[0]
        .message.content
    )


def test_oversized_body_is_413(url):
    body = b'{"model": "x", "pad": "' + b"a" * (70 * 1024) + b'"}'
    r = httpx.post(f"{url}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_metrics_count_requests_and_tokens(url, client):
    client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5)
    text = httpx.get(f"{url}/metrics").text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"
    }
    assert samples['orin_requests_total{status="200"}'] >= 1
    assert samples["orin_generated_tokens_total"] >= 5
    assert samples["orin_ttft_seconds_count"] >= 1 and samples["orin_token_seconds_count"] >= 4
    assert "orin_queue_depth" in samples


def test_full_queue_answers_429_with_retry_after(onnx_dir):
    app, _ = slow_app(onnx_dir, delay=0.02, max_queue=1)
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 60}
    statuses: list[int] = []
    with serving(app) as base:

        def post() -> None:
            statuses.append(httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30).status_code)

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:  # one runs, one waits
            t.start()
            time.sleep(0.3)
        third = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30)
        for t in threads:
            t.join()
        assert third.status_code == 429 and third.headers["retry-after"] == "2"
        assert third.json()["error"]["code"] == "queue_full"
        assert statuses == [200, 200]


def test_client_disconnect_stops_generation(onnx_dir):
    app, backend = slow_app(onnx_dir, delay=0.02)
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 400, "stream": True}
    with serving(app) as base:
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            for _ in range(6):
                next(lines)
        time.sleep(0.5)
        steps = backend.steps
        time.sleep(0.5)
        assert backend.steps == steps < 100  # stopped, long before 400 tokens
        after = httpx.post(f"{base}/v1/chat/completions", json=body | {"stream": False, "max_tokens": 3})
        assert after.status_code == 200  # the slot was released


def test_generation_past_the_timeout_is_cut_off(onnx_dir):
    app, _ = slow_app(onnx_dir, delay=0.05, timeout_s=0.5)
    with serving(app) as base:
        r = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": MODEL, "messages": QUESTION, "max_tokens": 200},
            timeout=30,
        )
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
