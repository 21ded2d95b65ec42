"""The dtype follows the CPU: bf16 only with native bf16 instructions (an AVX2-only CPU runs
vLLM's bf16 path ~14x slower than float32, past vLLM's step timeout)."""
from __future__ import annotations

import pytest

from labeler import hardware


@pytest.fixture
def flags(monkeypatch):
    def set_flags(*names):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(names))
    monkeypatch.delenv("LABELER_NO_BF16", raising=False)
    return set_flags


def test_auto_is_float32_on_an_avx2_only_cpu(flags, caplog):
    flags("avx", "avx2", "fma")
    with caplog.at_level("INFO", logger="labeler.hardware"):
        assert hardware.resolve_dtype("auto", gpu=False) == "float32"
    assert "auto -> float32" in caplog.text  # the choice is logged
    assert hardware.resolve_bf16("auto", gpu=False) is False


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_is_bf16_with_native_bf16(flags, flag):
    flags("avx2", "avx512f", flag)
    assert hardware.resolve_dtype("auto", gpu=False) == "bfloat16"
    assert hardware.resolve_bf16("auto", gpu=False) is True


def test_no_bf16_switch_and_gpu(flags, monkeypatch):
    flags("avx512f", "avx512_bf16")
    monkeypatch.setenv("LABELER_NO_BF16", "1")
    assert hardware.resolve_dtype("auto", gpu=False) == "float32"
    assert hardware.resolve_dtype("auto", gpu=True) == "bfloat16"


def test_forced_bf16_is_kept_with_a_warning(flags, caplog):
    flags("avx2")
    with caplog.at_level("WARNING", logger="labeler.hardware"):
        assert hardware.resolve_dtype("bfloat16", gpu=False) == "bfloat16"
    assert "slower" in caplog.text
    assert hardware.resolve_dtype("float32", gpu=False) == "float32"


def test_engine_config_defaults_to_auto_and_rejects_unknown_dtypes():
    from labeler.config import EngineConfig
    from labeler.config import GenerativeStudentConfig as DistillConfig

    assert EngineConfig(model="m").dtype == "auto"
    assert DistillConfig().bf16 == "auto"
    with pytest.raises(ValueError):
        EngineConfig(model="m", dtype="bf17")


def test_runtime_knobs_leave_the_stage_fingerprint_alone():
    from labeler.config import JudgeConfig, identity

    a = JudgeConfig(engine={"model": "m", "batch_size": 8, "cpu_threads": "all", "num_actors": 2})
    b = JudgeConfig(engine={"model": "m", "batch_size": 64})
    c = JudgeConfig(engine={"model": "m2"})
    assert identity(a) == identity(b) != identity(c)


def test_thread_count_of_cpu_threads(monkeypatch):
    from labeler import hardware

    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 4)
    assert hardware.thread_count(None) is None
    assert hardware.thread_count("all") == 4
    assert hardware.thread_count(2) == 2 and hardware.thread_count(16) == 4
