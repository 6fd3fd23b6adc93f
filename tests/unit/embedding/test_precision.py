"""precision=auto: float16 on a GPU; on a CPU, the faster of float32 and bfloat16 as measured there (never bfloat16
because a CPU flag exists), measured once per machine and model size; an explicit precision is obeyed anywhere."""

import pytest
import torch

from clip_aesthetics.backbones.families import load_backbone, resolve_backbone
from clip_aesthetics.embedding import precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def backbone(tiny_clip):
    return load_backbone(resolve_backbone(str(tiny_clip)), CPU)


def test_an_asked_precision_is_obeyed_on_any_cpu_and_said_when_emulated(fake_cpu):
    timed = fake_cpu(native=False)
    choice = precision.choose("bfloat16", CPU)
    assert choice.dtype == torch.bfloat16 and "as asked" in choice.reason and "emulated" in choice.reason
    assert precision.choose("float32", CPU).reason == "float32 (as asked)"
    fake_cpu(native=True)
    assert "emulated" not in precision.choose("bfloat16", CPU).reason
    assert timed == [], "an asked precision is never measured"


def test_auto_without_native_bfloat16_is_float32_without_measuring(fake_cpu, backbone):
    timed = fake_cpu(native=False)
    choice = precision.choose("auto", CPU, size=precision.size_of_model(backbone[0]), load=lambda: backbone)
    assert choice.name == "float32" and "no native bfloat16" in choice.reason and timed == []


@pytest.mark.parametrize("speed, chosen", [(0.59, "float32"), (1.05, "float32"), (2.0, "bfloat16")],
                         ids=["avx512-bf16-xeon", "no-faster", "amx-xeon"])
def test_auto_on_a_native_bfloat16_cpu_takes_the_faster_one_as_measured(fake_cpu, backbone, speed, chosen):
    """An AVX512-BF16 Xeon without AMX computes bfloat16 natively yet slower (0.59x, measured): float32 there.
    bfloat16 must be clearly faster (MARGIN) to be chosen, being less exact."""
    timed = fake_cpu(native=True, speed=speed)
    size = precision.size_of_model(backbone[0])
    choice = precision.choose("auto", CPU, size=size, load=lambda: backbone)
    assert choice.name == chosen and f"{speed:.2f}x" in choice.reason and timed == [size]


def test_a_measurement_is_taken_once_per_machine_and_model_size(fake_cpu, backbone, backbones):
    timed = fake_cpu(native=True, speed=2.0)
    size = precision.size_of_model(backbone[0])
    for _ in range(3):
        assert precision.choose("auto", CPU, size=size, load=lambda: backbone).name == "bfloat16"
    assert timed == [size], "kept in the timings file after the first"
    assert precision.choose("auto", CPU, size=size).name == "bfloat16", "read back without a model at hand"
    other = load_backbone(resolve_backbone(str(backbones["siglip"])), CPU)
    precision.choose("auto", CPU, size=precision.size_of_model(other[0]), load=lambda: other)
    assert timed == [size, precision.size_of_model(other[0])], "another model size is measured on its own"


def test_auto_without_a_measurement_or_a_model_takes_float32(fake_cpu):
    fake_cpu(native=True, speed=2.0)
    choice = precision.choose("auto", CPU, size="clip 1x2x3")
    assert choice.name == "float32" and "not yet measured" in choice.reason


def test_auto_on_a_gpu_keeps_a_half_precision_the_model_was_trained_in(fake_cpu):
    fake_cpu(native=False)
    assert precision.choose("auto", CUDA).name == "float16"
    assert precision.choose("auto", CUDA, recorded="bfloat16").name == "bfloat16"
    assert precision.choose("auto", CUDA, recorded="float32").name == "float16"
    with pytest.raises(ValueError, match="precision='half'"):
        precision.choose("half", CPU)


def test_the_real_timing_measures_both_precisions(backbone):
    seconds = precision.time_forward(*backbone)
    assert set(seconds) == {"float32", "bfloat16"} and all(v > 0 for v in seconds.values())
