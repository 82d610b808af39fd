"""tegrastats / nvpmodel / jetson_clocks parsing on recorded output, the energy summary, and the
tegrastats logger against a stand-in tegrastats process."""

from __future__ import annotations

import json
import stat
import time

import pytest

from orin_unlearn.edge.device.telemetry import (
    CommandResult,
    TegrastatsLogger,
    TegrastatsSample,
    TegrastatsUnavailableError,
    capture_power_state,
    parse_jetson_clocks,
    parse_nvpmodel,
    parse_tegrastats,
    summary,
)
from tests.jetson.simulated import SAMPLES, runner, sample


def lines(name: str) -> list[str]:
    return sample(name).splitlines()


# file -> (RAM used, RAM total, EMC %, EMC MHz, GR3D %, GR3D MHz, rails of the first line, input rail)
FIRST_LINES = {
    "tegrastats_jp4_nano.txt": (
        1804, 3964, 3, 1600, 0, (76,),
        {"POM_5V_IN": (2310, 2310), "POM_5V_GPU": (0, 0), "POM_5V_CPU": (412, 412)},
        ("POM_5V_IN", 2310),
    ),
    "tegrastats_jp5_agx_orin.txt": (
        2448, 62840, 0, None, 0, (),
        {"VDD_GPU_SOC": (1200, 1200), "VDD_CPU_CV": (400, 400), "VIN_SYS_5V0": (2321, 2321),
         "VDDQ_VDD2_1V8AO": (100, 100)},
        ("sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO", 4021),
    ),
    "tegrastats_jp5_xavier_nx.txt": (
        3012, 6851, 2, 204, 0, (114,),
        {"VDD_IN": (2810, 2810), "VDD_CPU_GPU_CV": (640, 640), "VDD_SOC": (660, 660)},
        ("VDD_IN", 2810),
    ),
    "tegrastats_jp6_agx_orin.txt": (
        18207, 62841, 3, 2133, 0, (0, 0),
        {"VDD_GPU_SOC": (2412, 2412), "VDD_CPU_CV": (1607, 1607), "VIN_SYS_5V0": (4707, 4707)},
        ("sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0", 8726),
    ),
    "tegrastats_jp6_orin_nano.txt": (
        3503, 7620, 0, 2133, 0, (305,),
        {"VDD_IN": (4915, 4915), "VDD_CPU_GPU_CV": (449, 449), "VDD_SOC": (1431, 1431)},
        ("VDD_IN", 4915),
    ),
    "tegrastats_jp6_orin_nano_user.txt": (
        1905, 7620, None, None, 0, (),
        {"VDD_IN": (4742, 4742), "VDD_CPU_GPU_CV": (482, 482), "VDD_SOC": (1446, 1446)},
        ("VDD_IN", 4742),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FIRST_LINES))
def test_first_line_of_each_recorded_layout(name):
    ram_used, ram_total, emc, emc_mhz, gr3d, gr3d_mhz, rails, power = FIRST_LINES[name]
    s = parse_tegrastats(lines(name)[0])
    assert (s.ram_used_mb, s.ram_total_mb) == (ram_used, ram_total)
    assert (s.emc_percent, s.emc_mhz) == (emc, emc_mhz)
    assert (s.gr3d_percent, s.gr3d_mhz) == (gr3d, gr3d_mhz)
    assert s.rails == rails  # NC channels, RAM/SWAP fractions and temperatures are not rails
    assert s.input_power() == power


def test_every_recorded_line_parses():
    files = sorted(SAMPLES.glob("tegrastats_*.txt"))
    assert len(files) == len(FIRST_LINES)
    for path in files:
        for line in path.read_text().splitlines():
            s = parse_tegrastats(line)
            assert s.input_power() is not None and 0 < s.ram_used_mb < s.ram_total_mb, (path.name, line)


def test_busy_lines_read_load_and_frequency():
    busy = parse_tegrastats(lines("tegrastats_jp6_orin_nano.txt")[1])
    assert (busy.emc_percent, busy.gr3d_percent, busy.gr3d_mhz) == (61, 99, (612,))
    assert busy.rails["VDD_IN"] == (9870, 7392) and busy.timestamp == "01-24-2025 09:17:10"
    agx = parse_tegrastats(lines("tegrastats_jp6_agx_orin.txt")[1])
    assert (agx.emc_percent, agx.emc_mhz, agx.gr3d_percent, agx.gr3d_mhz) == (58, 3199, 97, (1300, 1300))
    user = parse_tegrastats(lines("tegrastats_jp6_orin_nano_user.txt")[1])
    assert user.gr3d_percent == 93 and user.emc_percent is None
    assert json.loads(json.dumps(user.as_dict()))["rails"]["VDD_IN"] == [13250, 9000]


def test_other_text_is_refused():
    for text in ("", "NV Power Mode: MAXN", "tegrastats: command not found"):
        with pytest.raises(ValueError, match="not a tegrastats line"):
            parse_tegrastats(text)


def _sample(vdd_in_mw: int | None, gr3d: int = 50, ram: int = 3000) -> TegrastatsSample:
    rails = {"VDD_IN": (vdd_in_mw, vdd_in_mw)} if vdd_in_mw is not None else {}
    return TegrastatsSample(ram, 7620, 10, 2133, gr3d, (612,), rails)


def test_summary_energy_and_tokens_per_joule():
    samples = [_sample(4000, 10, 3000), _sample(6000, 60, 5000), _sample(8000, 80, 4000)]
    power = summary(samples, duration_s=10.0, tokens=300)
    assert power.rail == "VDD_IN" and power.samples == 3
    assert power.avg_w == pytest.approx(6.0) and power.peak_w == pytest.approx(8.0)
    assert power.energy_j == pytest.approx(60.0) and power.tokens_per_joule == pytest.approx(5.0)
    assert power.ram_peak_mb == 5000 and power.gr3d_avg_percent == pytest.approx(50.0)
    assert summary(samples, 10.0).tokens_per_joule is None


def test_summary_of_recorded_agx_lines_sums_the_rails():
    samples = [parse_tegrastats(line) for line in lines("tegrastats_jp6_agx_orin.txt")]
    power = summary(samples, duration_s=2.0, tokens=40)
    watts = [(2412 + 1607 + 4707) / 1000, (21480 + 3210 + 7012) / 1000]
    assert power.rail.startswith("sum of VDD_GPU_SOC")
    assert power.avg_w == pytest.approx(sum(watts) / 2) and power.peak_w == pytest.approx(watts[1])
    assert power.tokens_per_joule == pytest.approx(40 / (power.avg_w * 2.0))


def test_summary_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="carries a power rail"):
        summary([_sample(None)], 1.0)
    with pytest.raises(ValueError, match="carries a power rail"):
        summary([], 1.0)
    with pytest.raises(ValueError, match="duration_s"):
        summary([_sample(5000)], 0.0)


def test_logger_without_tegrastats_says_not_a_jetson():
    logger = TegrastatsLogger(which=lambda name: None)
    with pytest.raises(TegrastatsUnavailableError, match="not a Jetson"):
        with logger:
            pass
    assert logger.samples == []


@pytest.fixture
def fake_tegrastats(tmp_path):
    """A stand-in `tegrastats` that records its arguments and prints recorded lines every 20 ms."""
    record = tmp_path / "argv.txt"
    script = tmp_path / "tegrastats"
    data = SAMPLES / "tegrastats_jp6_orin_nano.txt"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > "{record}"\n'
        "echo 'a banner line that is not a sample'\n"
        f'while true; do while read -r l; do echo "$l"; sleep 0.02; done < "{data}"; done\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, record


def test_logger_reads_samples_and_writes_jsonl(fake_tegrastats, tmp_path):
    script, record = fake_tegrastats
    out = tmp_path / "bench" / "tegrastats.jsonl"
    with TegrastatsLogger(interval_ms=20, jsonl_path=out, executable=str(script)) as logger:
        deadline = time.monotonic() + 10
        while len(logger.samples) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    samples = logger.samples
    assert len(samples) >= 4 and logger.skipped_lines == 1
    assert record.read_text().split() == ["--interval", "20"]
    assert [s.rails["VDD_IN"][0] for s in samples[:4]] == [4915, 9870, 4915, 9870]
    assert all(s.t is not None and 0 <= s.t <= logger.duration_s for s in samples)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == len(samples) and written[1]["gr3d_percent"] == 99
    power = logger.summary(tokens=100)
    assert power.duration_s == logger.duration_s > 0
    assert 4.9 <= power.avg_w <= 9.9 and power.peak_w == pytest.approx(9.87)


NVPMODEL = {
    "nvpmodel_agx_maxn.txt": ("MAXN", 0),
    "nvpmodel_nx_15w.txt": ("15W", 1),
    "nvpmodel_nano_super.txt": ("MAXN_SUPER", 2),
}


@pytest.mark.parametrize("name", sorted(NVPMODEL))
def test_nvpmodel(name):
    mode = parse_nvpmodel(sample(name))
    assert (mode.name, mode.mode_id) == NVPMODEL[name]


def test_nvpmodel_refuses_other_text():
    with pytest.raises(ValueError, match="NV Power Mode"):
        parse_nvpmodel("NVPM ERROR: failed to read PARAM\n")


def test_jetson_clocks_locked_and_dynamic():
    locked = parse_jetson_clocks(sample("jetson_clocks_nano_super_locked.txt"))
    assert locked.locked and len(locked.cpus) == 6 and locked.power_mode == "MAXN_SUPER"
    assert locked.cpus["cpu0"].max_mhz == pytest.approx(1728.0)  # printed in kHz
    assert locked.gpu is not None and locked.gpu.current_mhz == pytest.approx(1020.0)  # printed in Hz
    assert locked.emc_override is True
    dynamic = parse_jetson_clocks(sample("jetson_clocks_agx_dynamic.txt"))
    assert not dynamic.locked and len(dynamic.cpus) == 12 and dynamic.emc_override is False
    assert dynamic.gpu is not None and (dynamic.gpu.min_mhz, dynamic.gpu.max_mhz) == (306.0, 1300.5)
    assert dynamic.as_dict()["locked"] is False
    with pytest.raises(ValueError, match="no clock lines"):
        parse_jetson_clocks(sample("jetson_clocks_not_root.txt"))


def test_capture_power_state_records_what_it_can():
    run = runner(
        {
            "nvpmodel": sample("nvpmodel_nano_super.txt"),
            "jetson_clocks": CommandResult(1, "", sample("jetson_clocks_not_root.txt")),
        }
    )
    state = capture_power_state(run)
    assert state["nvpmodel"] == {"name": "MAXN_SUPER", "mode_id": 2}
    assert "as a root user" in state["jetson_clocks"]["error"]
    off_jetson = capture_power_state(runner({}))
    assert all("not installed (not a Jetson)" in v["error"] for v in off_jetson.values())
    run = runner(
        {
            "nvpmodel": sample("nvpmodel_agx_maxn.txt"),
            "jetson_clocks": sample("jetson_clocks_agx_dynamic.txt"),
        }
    )
    assert capture_power_state(run)["jetson_clocks"]["locked"] is False
