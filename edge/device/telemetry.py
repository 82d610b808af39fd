"""Jetson power and load telemetry: tegrastats samples, energy per token, nvpmodel / jetson_clocks state.

A benchmark wraps the measured work in a `TegrastatsLogger` and asks for a `summary`:

    from orin_unlearn.edge.device.telemetry import TegrastatsLogger, TegrastatsUnavailableError, summary

    try:
        with TegrastatsLogger(interval_ms=100, jsonl_path="bench/tegrastats.jsonl") as logger:
            tokens = run_the_benchmark()
        power = summary(logger.samples, logger.duration_s, tokens)   # PowerSummary; .as_dict() for JSON
    except TegrastatsUnavailableError as e:                            # not a Jetson: no numbers, say why
        power = {"unavailable": str(e)}

- `TegrastatsLogger(interval_ms, jsonl_path=None)`: runs `tegrastats --interval MS` while the block
  runs, parses every line on a thread; `.samples` (list of `TegrastatsSample`), `.duration_s`.
  Without tegrastats on PATH, entering the block raises `TegrastatsUnavailableError`: numbers are
  never invented.
- `summary(samples, duration_s, tokens=None)`: average and peak power of the input rail (VDD_IN,
  POM_5V_IN on older modules; on a module without one, such as AGX Orin, the sum of the rails
  tegrastats reports) in W, energy = average power x duration in J, tokens per joule, peak RAM and
  average GR3D (GPU) / EMC (memory controller) load. The input rail is the whole module's power,
  not the GPU's alone.
- `parse_tegrastats(line)`, `parse_nvpmodel(text)`, `parse_jetson_clocks(text)`: pure parsers.
- `capture_power_state()`: nvpmodel mode and jetson_clocks state, for a benchmark's JSON record.

EMC load appears only when tegrastats runs as root; `jetson_clocks --show` needs root too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
NOT_RAILS = {"NC", "RAM", "SWAP", "IRAM"}  # NC: an unconnected monitor channel on AGX Orin
_TIMESTAMP = re.compile(r"^\s*(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@\[?(\d+)\]?)?")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_RAIL = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?\b")
_POWER_MODE = re.compile(r"NV Power Mode:\s*(\S+)")
_CLOCK = re.compile(r"^(cpu\d+|GPU|EMC):?\s+(.*)$")
_KEY_VALUE = re.compile(r"(\w+)=(\S+)")
# Where JetPack puts its tools; a service's PATH may lack /usr/sbin.
TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/cuda/bin"])


class TegrastatsUnavailableError(RuntimeError):
    """tegrastats is not installed here: not a Jetson, so no power or load numbers exist."""


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str]], CommandResult | None]


def run_command(argv: Sequence[str], timeout: float = 15.0) -> CommandResult | None:
    """Run a tool found on PATH (plus JetPack's folders); None when it is not installed."""
    exe = shutil.which(argv[0], path=TOOL_PATH)
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return CommandResult(-1, "", str(e))
    return CommandResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class TegrastatsSample:
    """One tegrastats line. Power in mW as (current, tegrastats' running average); None = not printed."""

    ram_used_mb: int
    ram_total_mb: int
    emc_percent: int | None
    emc_mhz: int | None
    gr3d_percent: int | None
    gr3d_mhz: tuple[int, ...]
    rails: dict[str, tuple[int, int]] = field(default_factory=dict)
    timestamp: str | None = None
    t: float | None = None  # seconds since the logger started, when it read the line

    def input_power(self) -> tuple[str, int] | None:
        """(rail, current mW) of the module's input: VDD_IN / POM_5V_IN, else the sum of all rails."""
        for name in INPUT_RAILS:
            if name in self.rails:
                return name, self.rails[name][0]
        if not self.rails:
            return None
        return "sum of " + "+".join(self.rails), sum(current for current, _ in self.rails.values())

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["gr3d_mhz"] = list(self.gr3d_mhz)
        out["rails"] = {name: list(v) for name, v in self.rails.items()}
        return out


def parse_tegrastats(line: str) -> TegrastatsSample:
    """Parse one line of `tegrastats` (JetPack 4-6 layouts); ValueError if it is not such a line."""
    ram = _RAM.search(line)
    if ram is None:
        raise ValueError(f"not a tegrastats line (no 'RAM used/totalMB'): {line.strip()[:80]!r}")
    emc, gr3d, stamp = _EMC.search(line), _GR3D.search(line), _TIMESTAMP.match(line)
    rails = {
        name: (int(current), int(average))
        for name, current, average in _RAIL.findall(line)
        if name not in NOT_RAILS
    }
    return TegrastatsSample(
        ram_used_mb=int(ram.group(1)),
        ram_total_mb=int(ram.group(2)),
        emc_percent=int(emc.group(1)) if emc else None,
        emc_mhz=int(emc.group(2)) if emc and emc.group(2) else None,
        gr3d_percent=int(gr3d.group(1)) if gr3d else None,
        gr3d_mhz=tuple(int(x) for x in gr3d.group(2).split(",") if x) if gr3d and gr3d.group(2) else (),
        rails=rails,
        timestamp=stamp.group(1) if stamp else None,
    )


@dataclass(frozen=True)
class PowerSummary:
    """Power over a measured interval; `rail` says which reading the watts are."""

    samples: int
    duration_s: float
    rail: str
    avg_w: float
    peak_w: float
    energy_j: float
    tokens: int | None
    tokens_per_joule: float | None
    ram_peak_mb: int
    gr3d_avg_percent: float | None
    emc_avg_percent: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None


def summary(
    samples: Sequence[TegrastatsSample], duration_s: float, tokens: int | None = None
) -> PowerSummary:
    """Average / peak input power (W), energy (J) = average x `duration_s`, and tokens per joule.

    Raises ValueError without samples that carry power, or for a duration that is not positive.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if tokens is not None and tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    readings = [(s, p) for s in samples if (p := s.input_power()) is not None]
    if not readings:
        raise ValueError(f"none of the {len(samples)} tegrastats samples carries a power rail")
    watts = [mw / 1000 for _, (_, mw) in readings]
    avg = sum(watts) / len(watts)
    energy = avg * duration_s
    return PowerSummary(
        samples=len(readings),
        duration_s=duration_s,
        rail=readings[0][1][0],
        avg_w=avg,
        peak_w=max(watts),
        energy_j=energy,
        tokens=tokens,
        tokens_per_joule=tokens / energy if tokens is not None and energy > 0 else None,
        ram_peak_mb=max(s.ram_used_mb for s in samples),
        gr3d_avg_percent=_mean([s.gr3d_percent for s in samples if s.gr3d_percent is not None]),
        emc_avg_percent=_mean([s.emc_percent for s in samples if s.emc_percent is not None]),
    )


class TegrastatsLogger:
    """Run `tegrastats --interval MS` for the length of a with-block and keep every parsed sample."""

    def __init__(
        self,
        interval_ms: int = 100,
        jsonl_path: str | Path | None = None,
        executable: str = "tegrastats",
        which: Callable[[str], str | None] = lambda name: shutil.which(name, path=TOOL_PATH),
        clock: Callable[[], float] = time.monotonic,
    ):
        if interval_ms < 1:
            raise ValueError(f"interval_ms must be >= 1, got {interval_ms}")
        self.interval_ms = interval_ms
        self.jsonl_path = Path(jsonl_path) if jsonl_path is not None else None
        self.executable = executable
        self._which = which
        self._clock = clock
        self._samples: list[TegrastatsSample] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self.started: float | None = None
        self.stopped: float | None = None
        self.skipped_lines = 0
        self.stderr = ""

    def __enter__(self) -> TegrastatsLogger:
        exe = self._which(self.executable)
        if exe is None:
            raise TegrastatsUnavailableError(
                f"{self.executable} is not installed here: this is not a Jetson (JetPack ships "
                "/usr/bin/tegrastats), so no power or load numbers are recorded"
            )
        argv = [exe, "--interval", str(self.interval_ms)]
        stdbuf = self._which("stdbuf")  # line-buffer tegrastats' stdout into our pipe
        if stdbuf is not None:
            argv = [stdbuf, "-oL", *argv]
        if self.jsonl_path is not None:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.jsonl_path, "w", encoding="utf-8")
        try:
            self._proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
            )
        except OSError as e:
            if self._file is not None:
                self._file.close()
            raise TegrastatsUnavailableError(f"cannot start {exe}: {e}") from e
        self.started = self._clock()
        self._thread = threading.Thread(target=self._read, name="tegrastats", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None  # set before the thread starts
        for line in self._proc.stdout:
            try:
                sample = parse_tegrastats(line)
            except ValueError:
                self.skipped_lines += 1
                continue
            sample = replace(sample, t=self._clock() - (self.started or 0.0))
            with self._lock:
                self._samples.append(sample)
                if self._file is not None:
                    self._file.write(json.dumps(sample.as_dict()) + "\n")
                    self._file.flush()

    def __exit__(self, *exc: object) -> None:
        self.stopped = self._clock()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stderr is not None:
                self.stderr = self._proc.stderr.read()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    @property
    def samples(self) -> list[TegrastatsSample]:
        with self._lock:
            return list(self._samples)

    @property
    def duration_s(self) -> float:
        """Seconds from entering the block to leaving it (or to now, while it runs)."""
        if self.started is None:
            return 0.0
        return (self.stopped if self.stopped is not None else self._clock()) - self.started

    def summary(self, tokens: int | None = None) -> PowerSummary:
        return summary(self.samples, self.duration_s, tokens)


@dataclass(frozen=True)
class PowerMode:
    name: str
    mode_id: int | None


def parse_nvpmodel(text: str) -> PowerMode:
    """`nvpmodel -q` ("NV Power Mode: MAXN\\n0", maybe after "NV Fan Mode:quiet") -> PowerMode."""
    match = _POWER_MODE.search(text)
    if match is None:
        raise ValueError(f"no 'NV Power Mode:' line in nvpmodel output: {text.strip()[:80]!r}")
    after = text[match.end() :].splitlines()[1:]
    mode_id = next((int(line.strip()) for line in after if line.strip().isdigit()), None)
    return PowerMode(match.group(1), mode_id)


@dataclass(frozen=True)
class Clock:
    """One clock's range and current value in MHz."""

    min_mhz: float
    max_mhz: float
    current_mhz: float

    @property
    def pinned(self) -> bool:
        return self.min_mhz == self.max_mhz


@dataclass(frozen=True)
class ClockState:
    cpus: dict[str, Clock]
    gpu: Clock | None
    emc: Clock | None
    emc_override: bool | None
    power_mode: str | None

    @property
    def locked(self) -> bool:
        """What `sudo jetson_clocks` does: CPU and GPU minimum = maximum, EMC frequency overridden."""
        return (
            bool(self.cpus)
            and all(c.pinned for c in self.cpus.values())
            and self.gpu is not None
            and self.gpu.pinned
            and (bool(self.emc_override) or (self.emc is not None and self.emc.pinned))
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "locked": self.locked}


def parse_jetson_clocks(text: str) -> ClockState:
    """`jetson_clocks --show` -> ClockState (CPU values are printed in kHz, GPU and EMC in Hz).

    Raises ValueError for output without any clock line (e.g. the "run as root" error).
    """
    cpus: dict[str, Clock] = {}
    gpu = emc = None
    override = None
    mode = _POWER_MODE.search(text)
    for line in text.splitlines():
        match = _CLOCK.match(line.strip())
        if match is None:
            continue
        values = dict(_KEY_VALUE.findall(match.group(2)))
        if not {"MinFreq", "MaxFreq", "CurrentFreq"} <= set(values):
            continue
        scale = 1e3 if match.group(1).startswith("cpu") else 1e6
        clock = Clock(*(int(values[k]) / scale for k in ("MinFreq", "MaxFreq", "CurrentFreq")))
        if match.group(1) == "GPU":
            gpu = clock
        elif match.group(1) == "EMC":
            emc = clock
            if "FreqOverride" in values:
                override = values["FreqOverride"] == "1"
        elif values.get("Online", "1") == "1":
            cpus[match.group(1)] = clock
    if not cpus and gpu is None and emc is None:
        raise ValueError(f"no clock lines in jetson_clocks output: {text.strip()[:80]!r}")
    return ClockState(cpus, gpu, emc, override, mode.group(1) if mode else None)


def capture_power_state(run: Runner = run_command) -> dict[str, Any]:
    """The power mode and clock state to record with a measurement; each part says why when absent."""
    state: dict[str, Any] = {}
    for key, argv, parse in (
        ("nvpmodel", ["nvpmodel", "-q"], parse_nvpmodel),
        ("jetson_clocks", ["jetson_clocks", "--show"], parse_jetson_clocks),
    ):
        result = run(argv)
        if result is None:
            state[key] = {"error": f"{argv[0]} is not installed (not a Jetson)"}
            continue
        try:
            parsed = parse(result.stdout)
        except ValueError:
            reason = (result.stderr or result.stdout).strip().splitlines()
            state[key] = {"error": reason[-1] if reason else f"{argv[0]} exited {result.returncode}"}
            continue
        state[key] = parsed.as_dict() if isinstance(parsed, ClockState) else asdict(parsed)
    return state
