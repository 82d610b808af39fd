"""`orin-unlearn serve`: an offline OpenAI-compatible server with a kiosk page, over one Generator.

    orin-unlearn serve --model runs/demo/export/onnx-fp16 [--backend auto|trt|ort|torch]
        [--host 127.0.0.1] [--port 8000] [--queue 8] [--timeout 60]

POST /v1/chat/completions (JSON or SSE streaming), GET /v1/models, GET /healthz, GET /metrics
(Prometheus text) and the kiosk page at /. One generation runs at a time; up to `--queue` more
wait, and beyond that a request gets 429 with Retry-After. A client that disconnects stops its
generation at the next token; a generation past `--timeout` seconds is cut off (504, or an
error event ending a stream). Only requests whose Host header names a loopback address, `--host`
or an `--allow-host` name are answered (DNS rebinding), and the kiosk page is sent with a
Content-Security-Policy that runs only its own script and lets no other page frame it. Every bad
request gets a 4xx JSON error in OpenAI's shape naming the bad parameter (413 for a body over the
limit, chunked or not), and the server keeps serving.

A prompt is tokenised once, in a worker thread (the encoder releases the GIL, so /healthz and
other requests stay responsive), after a check that refuses prompts whose length alone shows they
cannot fit; message contents are text, so a control token typed into a message cannot open a
turn (`ChatTokenizer.encode_chat`). `logit_bias` and `logprobs` are honoured; OpenAI features
this server lacks (tools, JSON response formats, n > 1) are refused, never silently ignored.

FastAPI is imported at module level (it resolves the handlers' annotations by name); the CLI
imports this module only for `serve`, so the runtime package does not need the [serve] extra.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from orin_unlearn.edge import api
from orin_unlearn.edge.formats import KIOSK
from orin_unlearn.edge.generator import ContextOverflowError, Generator, Stream
from orin_unlearn.edge.sampling import SamplingError, SamplingParams, TokenLogprob
from orin_unlearn.edge.server_limits import LOOPBACK_HOSTS, BodyLimit, HostAllowList, QueueFullError, Slot

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
API_FINISH = {"stop": "stop", "length": "length", "cancelled": "length"}
BUSY = {"Retry-After": "2"}


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
        self.ttft = Histogram(
            "orin_ttft_seconds", "time to first token", buckets=buckets, registry=self.registry
        )
        self.token = Histogram(
            "orin_token_seconds", "time per generated token", buckets=buckets, registry=self.registry
        )
        self.tokens = Counter("orin_generated_tokens", "tokens generated", registry=self.registry)
        self.requests = Counter(
            "orin_requests", "chat requests by HTTP status", ["status"], registry=self.registry
        )
        self.queue = Gauge("orin_queue_depth", "requests waiting for the generator", registry=self.registry)

    def observe(self, latency: dict) -> None:
        if latency.get("ttft_s") is not None:
            self.ttft.observe(latency["ttft_s"])
        for gap in latency.get("token_s", []):
            self.token.observe(gap)
        self.tokens.inc(latency.get("completion_tokens", 0))

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def kiosk_choices(model_dir: str | Path) -> dict[str, list[str]] | None:
    """The served stage's kiosk buttons (its KIOSK file, written by export from the run's
    catalogue); None for a stage without one (the page keeps the shipped catalogue's)."""
    path = Path(model_dir) / KIOSK
    if not path.is_file():
        return None
    try:
        choices = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(choices, dict) or not all(
        isinstance(choices.get(k), list) for k in ("moods", "genres")
    ):
        raise ValueError(f'{path}: expected {{"moods": [...], "genres": [...]}}')
    return {k: [str(v) for v in choices[k]] for k in ("moods", "genres")}


def kiosk_page(choices: dict[str, list[str]] | None) -> str:
    page = resources.files("orin_unlearn.edge").joinpath("kiosk/index.html").read_text(encoding="utf-8")
    if choices is None:
        return page
    line = "const CHOICES = " + json.dumps(choices).replace("</", "<\\/") + ";"
    return re.sub(r"^const CHOICES = .*;$", lambda _: line, page, count=1, flags=re.MULTILINE)


def _inline_hashes(page: str, tag: str) -> str:
    """CSP sources allowing exactly the page's inline <tag> elements, by their sha256."""
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(b.encode("utf-8")).digest()).decode() for b in bodies)
    return " ".join(f"'sha256-{d}'" for d in digests) or "'none'"


def page_headers(page: str) -> dict[str, str]:
    """The kiosk page's security headers: only its own inline script and style run (by hash), it
    talks only to this server, and no other page may frame it."""
    policy = (
        "default-src 'none'",
        f"script-src {_inline_hashes(page, 'script')}",
        f"style-src {_inline_hashes(page, 'style')}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
    return {
        "Content-Security-Policy": "; ".join(policy),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def create_app(
    generator: Generator,
    model_name: str,
    max_queue: int = 8,
    timeout_s: float = 60.0,
    default_max_tokens: int = 128,
    max_body: int = MAX_BODY,
    choices: dict[str, list[str]] | None = None,
    allowed_hosts: tuple[str, ...] | list[str] = LOOPBACK_HOSTS,
):
    """The server's ASGI app over `generator`; requests must name one of `allowed_hosts`."""
    app = FastAPI(title="orin-unlearn", docs_url=None, redoc_url=None, openapi_url=None)
    slot, metrics = Slot(max_queue), Metrics()
    generator.check_prompt_size([])  # computes the tokenizer's size bound now, not in a request
    kiosk = kiosk_page(choices)
    kiosk_headers = page_headers(kiosk)

    def fail(status: int, message: str, code: str | None = None, param: str | None = None, headers=None):
        metrics.requests.labels(str(status)).inc()
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(api.error(message, kind, param, code), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request", "type": ""}
        if first["type"] == "json_invalid":
            return fail(400, f"malformed JSON body: {first['msg']}", "invalid_json")
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        return fail(400, f"{param or 'body'}: {first['msg']}", "invalid_request", param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return fail(exc.status_code, str(exc.detail))

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(kiosk, headers=kiosk_headers)

    @app.get("/healthz")
    async def health():
        return {"status": "ok", "model": model_name, "backend": generator.backend_name, "queue": slot.waiting}

    @app.get("/metrics")
    async def prometheus():
        metrics.queue.set(slot.waiting)
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        card = {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": "orin-unlearn"}
        return {"object": "list", "data": [card]}

    def check_bias(params: SamplingParams) -> None:
        vocab = generator.tokenizer.vocab_size
        for token, _ in params.logit_bias:
            if token >= vocab:
                raise SamplingError(
                    "logit_bias", f"logit_bias: token {token} is not in the vocabulary (0..{vocab - 1})"
                )

    @app.post("/v1/chat/completions")
    async def chat(body: api.ChatRequest, request: Request):
        if body.model != model_name:
            return fail(
                404,
                f"model {body.model!r} does not exist; this server has {model_name!r}",
                "model_not_found",
                "model",
            )
        messages = body.chat()
        try:
            params = body.sampling(default_max_tokens)
            check_bias(params)
            generator.check_prompt_size(messages)  # cheap: refuses what cannot fit before tokenising
        except SamplingError as e:
            return fail(400, str(e), "invalid_request", e.param)
        except ContextOverflowError as e:
            return fail(400, str(e), "context_length_exceeded", "messages")
        if slot.full:
            return fail(
                429, f"server busy: {slot.waiting} requests are already waiting", "queue_full", headers=BUSY
            )
        try:
            ids = await asyncio.to_thread(generator.prompt_ids, messages)
        except ContextOverflowError as e:
            return fail(400, str(e), "context_length_exceeded", "messages")
        except ValueError as e:
            return fail(400, str(e), "invalid_request", "messages")
        try:
            await slot.acquire()
        except QueueFullError as e:
            return fail(429, f"server busy: {e}", "queue_full", headers=BUSY)
        stop, deadline = threading.Event(), time.monotonic() + timeout_s
        try:
            stream = generator.stream_ids(ids, params, lambda: stop.is_set() or time.monotonic() > deadline)
        except Exception:
            slot.release()
            raise
        pieces: asyncio.Queue = asyncio.Queue()
        run_in_thread(stream, pieces, slot)
        cid = api.completion_id()
        logprobs = (
            partial(api.choice_logprobs, token_bytes=generator.tokenizer.token_bytes)
            if params.logprobs
            else None
        )
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            timed_out = lambda: time.monotonic() > deadline  # noqa: E731
            events = sse(
                pieces, stop, cid, model_name, include_usage, metrics, logprobs, timed_out, timeout_s
            )
            return StreamingResponse(events, media_type="text/event-stream")
        text = []
        while True:
            item = await pieces.get()
            if isinstance(item, tuple):
                text.append(item[0])
                if await request.is_disconnected():
                    stop.set()
                continue
            break
        if isinstance(item, Exception):
            return fail(500, f"generation failed: {item}")
        metrics.observe(item.latency)
        if time.monotonic() > deadline and item.finish_reason == "cancelled":
            return fail(504, f"generation exceeded the {timeout_s:g} s request timeout", "timeout")
        metrics.requests.labels("200").inc()
        finish = API_FINISH[item.finish_reason]
        return api.response(
            cid,
            model_name,
            "".join(text),
            finish,
            item.prompt_tokens,
            item.completion_tokens,
            logprobs(item.logprobs or []) if logprobs else None,
        )

    return HostAllowList(BodyLimit(app, max_body), list(allowed_hosts))


def run_in_thread(stream: Stream, pieces: asyncio.Queue, slot: Slot) -> None:
    """Run `stream` in a daemon thread: each text delta goes to `pieces` as (text, the logprob
    entries since the last delta), then the Completion (or the exception); then `slot` is released."""
    loop = asyncio.get_running_loop()

    def put(item: object) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, item)

    def work() -> None:
        sent = 0
        try:
            for text in stream:
                entries = stream.logprobs[sent:] if stream.logprobs is not None else []
                sent += len(entries)
                put((text, entries))
            put(stream.completion)
        except Exception as e:  # a backend failure ends this request, not the server
            log.exception("generation failed")
            put(e)
        finally:
            loop.call_soon_threadsafe(slot.release)

    threading.Thread(target=work, daemon=True).start()


async def sse(
    pieces: asyncio.Queue,
    stop: threading.Event,
    cid: str,
    model: str,
    include_usage: bool,
    metrics: Metrics,
    logprobs: Callable[[list[TokenLogprob]], dict] | None = None,
    timed_out: Callable[[], bool] = lambda: False,
    timeout_s: float = 0.0,
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format; closing the response stops the generation.
    With `logprobs` (which formats entries), each chunk carries the entries of its tokens. A
    generation cut off by the timeout (`timed_out()` once it ended) ends in an error event, never
    in a finish reason a client would take for a complete reply."""

    def event(data: dict | str) -> str:
        return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"

    sent = 0
    try:
        yield event(api.chunk(cid, model, {"role": "assistant", "content": ""}))
        while True:
            item = await pieces.get()
            if isinstance(item, tuple):
                text, entries = item
                sent += len(entries)
                shown = logprobs(entries) if logprobs else None
                yield event(api.chunk(cid, model, {"content": text}, logprobs_=shown))
                continue
            break
        if isinstance(item, Exception):
            metrics.requests.labels("500").inc()
            yield event(api.error(f"generation failed: {item}", "server_error"))
        elif item.finish_reason == "cancelled" and timed_out():
            metrics.observe(item.latency)
            metrics.requests.labels("504").inc()
            message = f"generation exceeded the {timeout_s:g} s request timeout"
            yield event(api.error(message, "server_error", code="timeout"))
        else:
            metrics.observe(item.latency)
            metrics.requests.labels("200").inc()
            rest = logprobs((item.logprobs or [])[sent:]) if logprobs else None
            yield event(api.chunk(cid, model, {}, API_FINISH[item.finish_reason], logprobs_=rest))
            if include_usage:
                yield event(
                    api.chunk(cid, model, {}, usage_=api.usage(item.prompt_tokens, item.completion_tokens))
                )
        yield event("[DONE]")
    finally:
        stop.set()  # the client went away, or the stream ended: either way the worker may stop


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orin-unlearn serve", description=__doc__)
    parser.add_argument(
        "--model",
        required=True,
        help="ONNX or engine stage folder (or a merged checkpoint stage); verified against its manifest",
    )
    parser.add_argument("--backend", default="auto", help="auto, trt, ort or torch")
    parser.add_argument("--name", help="model id clients use (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="a further Host name clients may use (loopback names and --host always work)",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--queue", type=int, default=8, help="requests that may wait for the generator")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one generation may take")
    parser.add_argument("--max-tokens", type=int, default=128, help="default max_tokens of a request")
    parser.add_argument("--latency-log", help="append per-request latency records (JSON lines) here")
    parser.add_argument(
        "--no-memory-check",
        action="store_true",
        help="load a TensorRT engine even when the memory budget says the module cannot hold it",
    )
    args = parser.parse_args(argv)
    import uvicorn

    from orin_unlearn.edge.device.preflight import warn_on_device

    warn_on_device()

    try:
        from orin_unlearn.edge.backends import detect
        from orin_unlearn.edge.formats import MANIFEST, verify_stage

        # What a kiosk serves is exactly what was measured: every backend verifies a stage with a
        # manifest (ok, every file's sha256) as it opens it; here a folder without one (a bare
        # checkpoint) is refused too, unless --trust-unverified.
        if not (Path(args.model) / MANIFEST).is_file():
            verify_stage(args.model)
        trt = (detect(args.model) if args.backend == "auto" else args.backend) == "trt"
        options = {"memory_check": False} if args.no_memory_check and trt else {}
        generator = Generator.from_dir(args.model, args.backend, args.latency_log, **options)
        choices = kiosk_choices(args.model)
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: an engine for another device
        raise ValueError(f"cannot open {args.model}: {e}") from e
    name = args.name or Path(args.model).resolve().name
    hosts = [*LOOPBACK_HOSTS, args.host, *args.allow_host]
    app = create_app(
        generator, name, args.queue, args.timeout, args.max_tokens, choices=choices, allowed_hosts=hosts
    )
    log.info("serving %s (%s backend) on http://%s:%d", name, generator.backend_name, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
