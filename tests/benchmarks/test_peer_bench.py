"""The peer benchmark (ours vs llama.cpp): the turn order, the timed loop on an injected clock,
best-of and paired-median arithmetic and its direction, the JSON contract, the memory child, and
the one-line exit-2 errors. llama.cpp itself is a stand-in here (a fake `llama_cpp` module)."""

from __future__ import annotations

import ctypes
import json
import sys
import types

import numpy as np
import pytest

from orin_unlearn.benchmarks import peer_bench
from orin_unlearn.benchmarks.peer_bench import LLAMA, OURS, RAW, Run, Timing
from orin_unlearn.benchmarks.world import tiny_base_dir
from orin_unlearn.edge import cli
from orin_unlearn.edge.tokenizer import ChatTokenizer

VOCAB = 50


class Clock:
    """A clock that moves only when a fake engine works."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def next_token_logits(token: int) -> np.ndarray:
    """Logits whose arg-max is the token after `token`, so a greedy loop counts upwards."""
    logits = np.zeros(VOCAB, np.float32)
    logits[(token + 1) % VOCAB] = 1.0
    return logits


class FakeBackend:
    """Prefill costs 2 ms a token, a decode step 50 ms, on the injected clock."""

    def __init__(self, clock: Clock):
        self.clock, self.fed = clock, []

    def prefill(self, ids):
        self.clock.now += 0.002 * len(ids)
        return next_token_logits(ids[-1])

    def decode(self, token):
        self.clock.now += 0.05
        self.fed.append(token)
        return next_token_logits(token)


class FakeLlama:
    """`Llama`'s eval/reset surface: 1 ms a prompt token, 25 ms a decode step."""

    def __init__(self, clock: Clock):
        self.clock, self.calls, self.n_tokens, self.last = clock, [], 0, 0

    def reset(self):
        self.calls.append("reset")
        self.n_tokens = 0

    def eval(self, tokens):
        self.calls.append(list(tokens))
        self.clock.now += (0.001 if len(tokens) > 1 else 0.025) * len(tokens)
        self.n_tokens += len(tokens)
        self.last = tokens[-1]


def test_raw_loop_times_prefill_and_decode_on_the_clock_and_feeds_the_argmax():
    clock = Clock()
    backend = FakeBackend(clock)
    timing = peer_bench.raw_engine(backend, clock).run([7] * 64, 10)
    assert timing.prefill_s == pytest.approx(0.128)
    assert timing.decode_tokens_per_s == pytest.approx(20.0)
    assert backend.fed == list(range(8, 18))  # each step fed the previous step's arg-max


def test_llama_loop_resets_then_evals_prompt_then_one_token_a_step():
    clock = Clock()
    llm = FakeLlama(clock)
    engine = peer_bench.llama_engine(llm, lambda: next_token_logits(llm.last), clock)
    assert engine.name == LLAMA
    timing = engine.run([3, 4, 5], 4)
    assert llm.calls == ["reset", [3, 4, 5], [6], [7], [8], [9]]
    assert timing.prefill_s == pytest.approx(0.003)
    assert timing.decode_tokens_per_s == pytest.approx(40.0)
    engine.run([1, 2], 1)
    assert llm.calls[6:] == ["reset", [1, 2], [3]] and llm.n_tokens == 3


def test_schedule_alternates_the_engines_on_each_prompt():
    assert peer_bench.schedule(["A", "B"], [64, 256], 2) == [
        (0, 64, "A"),
        (0, 64, "B"),
        (0, 256, "A"),
        (0, 256, "B"),
        (1, 64, "A"),
        (1, 64, "B"),
        (1, 256, "A"),
        (1, 256, "B"),
    ]


class Scripted:
    """An engine that returns the timings it is given, one per run, and logs each call."""

    def __init__(self, name, timings, calls):
        self.name, self.timings, self.calls = name, iter(timings), calls

    def run(self, ids, steps):
        self.calls.append((self.name, len(ids), steps))
        return next(self.timings)


def test_interleave_runs_A_B_A_B_with_the_exact_prompts():
    calls: list = []
    engines = [
        Scripted("A", [Timing(0.1 * k, 10.0 * k) for k in range(1, 5)], calls),
        Scripted("B", [Timing(0.2, 5.0)] * 4, calls),
    ]
    seen: list[Run] = []
    runs = peer_bench.interleave(engines, {8: [1] * 8, 16: [2] * 16}, 3, 2, seen.append)
    assert calls == [("A", 8, 3), ("B", 8, 3), ("A", 16, 3), ("B", 16, 3)] * 2
    assert seen == runs
    assert [(r.repeat, r.context, r.engine) for r in runs] == peer_bench.schedule(["A", "B"], [8, 16], 2)
    assert runs[0] == Run(0, 8, "A", pytest.approx(100.0), 10.0)  # seconds become ms


def runs_of(engine: str, prefill_ms: list[float], decode: list[float], context: int = 64) -> list[Run]:
    return [Run(k, context, engine, p, d) for k, (p, d) in enumerate(zip(prefill_ms, decode, strict=True))]


def test_best_of_and_paired_median_differ_and_point_the_right_way():
    ours = runs_of(OURS, [100.0, 50.0, 80.0], [10.0, 30.0, 20.0])
    theirs = runs_of(LLAMA, [200.0, 200.0, 40.0], [20.0, 20.0, 40.0])
    got = peer_bench.ratios(ours, theirs)
    assert got["decode_best"] == pytest.approx(30 / 40)  # best against best
    assert got["decode_paired_median"] == pytest.approx(0.5)  # median of 0.5, 1.5, 0.5
    assert got["prefill_best"] == pytest.approx(40 / 50)  # their best ms over ours
    assert got["prefill_paired_median"] == pytest.approx(2.0)  # median of 2, 4, 0.5


def test_ours_twice_as_fast_reads_as_2_everywhere():
    ours = runs_of(OURS, [50.0, 60.0], [40.0, 30.0])
    theirs = runs_of(LLAMA, [100.0, 120.0], [20.0, 15.0])
    assert peer_bench.ratios(ours, theirs) == pytest.approx(
        {"decode_best": 2.0, "decode_paired_median": 2.0, "prefill_best": 2.0, "prefill_paired_median": 2.0}
    )
    assert peer_bench.ratios(theirs, ours)["decode_best"] == pytest.approx(0.5)


def test_runs_pair_by_repeat_not_by_position():
    ours = [Run(1, 64, OURS, 10.0, 10.0), Run(0, 64, OURS, 20.0, 20.0)]
    theirs = [Run(0, 64, LLAMA, 20.0, 10.0), Run(1, 64, LLAMA, 20.0, 20.0)]
    assert peer_bench.ratios(ours, theirs)["decode_paired_median"] == pytest.approx(1.25)  # 2.0 and 0.5
    with pytest.raises(ValueError, match="no paired runs"):
        peer_bench.ratios(ours, [Run(5, 64, LLAMA, 1.0, 1.0)])


def test_result_json_shape():
    runs = [
        *runs_of(OURS, [10.0, 12.0], [50.0, 40.0]),
        *runs_of(LLAMA, [20.0, 18.0], [25.0, 20.0]),
        *runs_of(RAW, [9.0, 9.5], [55.0, 60.0]),
        *runs_of(OURS, [40.0, 41.0], [45.0, 44.0], context=256),
        *runs_of(LLAMA, [60.0, 61.0], [22.0, 22.0], context=256),
        *runs_of(RAW, [39.0, 40.0], [50.0, 49.0], context=256),
    ]
    result = peer_bench.build_result(runs, {"threads": 2}, {"skipped": "--no-memory"})
    assert json.loads(json.dumps(result)) == result
    assert result["bench"] == "peer" and result["threads"] == 2 and result["reference"] == LLAMA
    assert result["engines"] == [OURS, LLAMA, RAW]
    assert [row["context"] for row in result["by_context"]] == [64, 256]
    row = result["by_context"][0]
    assert set(row["ratios"]) == {OURS, RAW}  # the reference is not compared with itself
    assert row["engines"][OURS] == {
        "prefill_ms_best": 10.0,
        "prefill_ms_median": 11.0,
        "decode_tokens_per_s_best": 50.0,
        "decode_tokens_per_s_median": 45.0,
    }
    assert row["ratios"][OURS]["decode_best"] == pytest.approx(2.0)
    assert row["ratios"][OURS]["prefill_best"] == pytest.approx(1.8)
    assert len(result["runs"]) == 12
    assert result["runs"][0] == {
        "repeat": 0,
        "context": 64,
        "engine": OURS,
        "prefill_ms": 10.0,
        "decode_tokens_per_s": 50.0,
    }


def test_passage_ids_are_exactly_n_tokens_and_prefixes_of_each_other():
    tokenizer = ChatTokenizer(tiny_base_dir())
    text, longest = peer_bench.passage_ids(tokenizer.encode, 300)
    assert len(longest) == 300 and tokenizer.encode(text)[:300] == longest
    for n in (1, 7, 64):
        assert peer_bench.passage_ids(tokenizer.encode, n)[1] == longest[:n]


def test_memory_readings_in_mib():
    status = "Name:\tpython\nVmHWM:\t  512000 kB\nVmRSS:\t  102400 kB\n"
    assert peer_bench.status_kb("VmHWM", status) == 512000
    assert peer_bench.status_kb("VmSwap", status) is None
    entry = peer_bench.memory_entry({"baseline_kb": 102400, "peak_kb": 512000})
    assert entry == {"baseline_mib": 100.0, "peak_mib": 500.0, "engine_mib": 400.0}
    assert "error" in peer_bench.memory_entry({"baseline_kb": None, "peak_kb": None})


def test_memory_child_measures_our_engine(onnx_dir):
    spec = {"engine": OURS, "path": str(onnx_dir), "threads": 1, "n_ctx": 40, "ids": [5] * 32, "steps": 4}
    entry = peer_bench.measure_memory(spec, timeout_s=300)
    assert entry["engine_mib"] > 1  # onnxruntime and the tiny graph (17 MB of weights)
    assert entry["peak_mib"] == pytest.approx(entry["baseline_mib"] + entry["engine_mib"], abs=0.11)
    broken = peer_bench.measure_memory(spec | {"path": str(onnx_dir / "nope")}, timeout_s=300)
    assert set(broken) == {"error"} and "nope" in broken["error"]


# --- the command, with a stand-in llama_cpp module ---------------------------------------------


def fake_llama_cpp() -> types.ModuleType:
    """`llama_cpp` with the calls the bench makes: a `Llama` whose tokenizer is the tiny base's and
    whose logits (in a ctypes buffer, as llama.cpp's) always point at the token after the last."""
    module = types.ModuleType("llama_cpp")
    module.__version__ = "0.0-fake"
    tokenizer = ChatTokenizer(tiny_base_dir())

    class Llama:
        made: list[dict] = []

        def __init__(self, **kwargs):
            Llama.made.append(kwargs)
            self.n_ctx, self.vocab = kwargs["n_ctx"], tokenizer.vocab_size
            self.ctx = (ctypes.c_float * self.vocab)()
            self.n_tokens = 0
            self.metadata = {"general.file_type": "3"}

        def n_vocab(self):
            return self.vocab

        def tokenize(self, text, add_bos=True, special=False):
            return tokenizer.encode(text.decode("utf-8"))

        def reset(self):
            self.n_tokens = 0

        def eval(self, tokens):
            assert self.n_tokens + len(tokens) <= self.n_ctx, "past llama.cpp's context"
            self.n_tokens += len(tokens)
            ctypes.memset(self.ctx, 0, ctypes.sizeof(self.ctx))
            self.ctx[(tokens[-1] + 1) % self.vocab] = 1.0

    module.Llama = Llama
    module.llama_get_logits_ith = lambda ctx, i: ctypes.cast(ctx, ctypes.POINTER(ctypes.c_float))
    module.llama_print_system_info = lambda: b"AVX2 = 1 (fake)"
    return module


@pytest.fixture
def gguf(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def bench(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["bench", "peer", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bench_peer_end_to_end_with_a_stand_in_llama(onnx_dir, gguf, tmp_path, capsys, monkeypatch):
    llama_cpp = fake_llama_cpp()
    monkeypatch.setitem(sys.modules, "llama_cpp", llama_cpp)
    out = tmp_path / "peer"
    args = ["--onnx", str(onnx_dir), "--gguf", str(gguf), "--contexts", "16,8", "--decode-tokens", "3"]
    code, stdout, err = bench(
        capsys, *args, "--repeats", "2", "--threads", "1", "--out", str(out), "--no-memory"
    )
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result == json.loads((out / "peer.json").read_text())
    assert (out / "peer.png").stat().st_size > 0 and result["plot"] == str(out / "peer.png")
    assert result["contexts"] == [8, 16] and result["decode_tokens"] == 3 and result["threads"] == 1
    assert result["engines"] == [OURS, LLAMA, RAW]
    assert [[r["repeat"], r["context"], r["engine"]] for r in result["runs"]] == [
        list(x) for x in peer_bench.schedule([OURS, LLAMA, RAW], [8, 16], 2)
    ]
    assert all(r["prefill_ms"] > 0 and r["decode_tokens_per_s"] > 0 for r in result["runs"])
    for row in result["by_context"]:
        ours, theirs = row["engines"][OURS], row["engines"][LLAMA]
        want = ours["decode_tokens_per_s_best"] / theirs["decode_tokens_per_s_best"]
        assert row["ratios"][OURS]["decode_best"] == pytest.approx(want, rel=1e-2, abs=1e-4)  # 4 decimals
    assert result["same_tokens"] is True and result["gguf_type"] == "file_type 3"
    assert result["versions"]["llama_cpp"] == "0.0-fake" and result["versions"]["onnxruntime"]
    assert result["memory"]["skipped"] == "--no-memory"
    (made,) = {json.dumps(m, sort_keys=True) for m in llama_cpp.Llama.made}  # one setting for every Llama
    assert json.loads(made) | {"model_path": None} == {
        "model_path": None,
        "n_threads": 1,
        "n_threads_batch": 1,
        "n_ctx": 20,
        "n_batch": 512,
        "verbose": False,
        "logits_all": False,
    }


def one_line_exit_2(code: int, stdout: str, err: str) -> str:
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


def test_without_llama_cpp_one_line_says_how_to_install(tmp_path, gguf, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` raises ImportError
    err = one_line_exit_2(*bench(capsys, "--onnx", str(tmp_path), "--gguf", str(gguf)))
    assert "pip install -e '.[peer]'" in err and "llama-cpp-python>=0.3.16" in err


@pytest.mark.parametrize(
    "args, problem",
    [
        (lambda tmp, gguf: ["--onnx", str(tmp / "missing"), "--gguf", str(gguf)], "no such folder"),
        (lambda tmp, gguf: ["--onnx", str(tmp), "--gguf", str(tmp / "missing.gguf")], "no such file"),
        (lambda tmp, gguf: ["--onnx", str(tmp), "--gguf", str(tmp / "notes.txt")], "not a GGUF file"),
        (lambda tmp, gguf: ["--onnx", str(tmp), "--gguf", str(gguf), "--contexts", "64,x"], "--contexts"),
        (lambda tmp, gguf: ["--onnx", str(tmp), "--gguf", str(gguf), "--contexts", "0"], "positive"),
        (lambda tmp, gguf: ["--onnx", str(tmp), "--gguf", str(gguf), "--repeats", "0"], "--repeats 0"),
        (lambda tmp, gguf: ["--onnx", str(tmp), "--gguf", str(gguf)], "model.onnx does not exist"),
    ],
    ids=["no-onnx-folder", "no-gguf", "not-gguf", "bad-contexts", "zero-context", "zero-repeats", "no-graph"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, gguf, capsys, monkeypatch, args, problem):
    monkeypatch.setitem(sys.modules, "llama_cpp", fake_llama_cpp())
    (tmp_path / "notes.txt").write_text("not a model")
    err = one_line_exit_2(*bench(capsys, *args(tmp_path, gguf)))
    assert problem in err


def test_context_longer_than_the_stage_is_refused(onnx_dir, gguf, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", fake_llama_cpp())
    err = one_line_exit_2(*bench(capsys, "--onnx", str(onnx_dir), "--gguf", str(gguf), "--contexts", "500"))
    assert "exceed" in err and "512" in err


def test_a_llama_cpp_build_that_dies_of_sigill_is_one_line_not_a_crash(onnx_dir, gguf, capsys, monkeypatch):
    """llama.cpp built natively on a CPU with AMX dies of SIGILL where a VM does not allow AMX: the
    memory children run before llama.cpp loads in-process, so that is caught and explained."""
    monkeypatch.setitem(sys.modules, "llama_cpp", fake_llama_cpp())
    monkeypatch.setattr(peer_bench, "CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    assert peer_bench.measure_memory({"engine": LLAMA}) == {"error": "killed by SIGILL"}
    args = ["--onnx", str(onnx_dir), "--gguf", str(gguf), "--contexts", "8", "--decode-tokens", "2"]
    err = one_line_exit_2(*bench(capsys, *args, "--repeats", "1", "--threads", "1"))
    assert "killed by SIGILL" in err and "-DGGML_NATIVE=OFF" in err and "--no-cache-dir" in err
