"""The GPU path, checked on a CPU: precision by capability, fp32 islands, the step cost model, the gpu and paper profiles."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from metalearn_sep import config
from metalearn_sep.cost import GIB, GPUS, estimate, largest_batch, measure_step, out_of_memory_message
from metalearn_sep.losses import dissimilarity_loss, si_snr_loss, similarity_loss, source_si_snr
from metalearn_sep.models import MetaTasNet
from metalearn_sep.precision import configure_backends, resolve_amp
from metalearn_sep.scales import GPU_PROFILES, SETTINGS, large, plan
from metalearn_sep.train import Trainer, TrainerConfig

from tiny_models import tiny_model


def a_gpu(monkeypatch, name: str, bf16: bool) -> None:
    """Make torch believe a CUDA GPU called ``name`` is present, with or without native bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16 or including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


# ----------------------------------------------------------------------------- precision by capability


def test_bf16_is_chosen_only_on_a_gpu_with_native_bf16(monkeypatch):
    assert resolve_amp("cpu", None) is False and resolve_amp("cpu", True) is True
    a_gpu(monkeypatch, "Tesla T4", bf16=False)  # torch's default answer counts emulation: True even here
    assert torch.cuda.is_bf16_supported() and resolve_amp("cuda", None) is False
    with pytest.raises(ValueError, match="bf16 was asked for, but Tesla T4 has no native bf16"):
        resolve_amp("cuda", True)
    a_gpu(monkeypatch, "NVIDIA A100", bf16=True)
    assert resolve_amp("cuda", None) is True and resolve_amp("cuda", False) is False


def test_cuda_backends_get_tf32_and_the_autotuner():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    try:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = False, False, False
        configure_backends("cpu")
        assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == (False, False, False)
        configure_backends("cuda")
        assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark) == (True, True, True)
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = saved


def test_train_refuses_bf16_on_a_t4_in_one_line(monkeypatch, tmp_path, capsys):
    from metalearn_sep.__main__ import main

    a_gpu(monkeypatch, "Tesla T4", bf16=False)
    config = Path(__file__).resolve().parents[1] / "configs" / "meta_tasnet_cpu.json"
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--device", "cuda", "--precision", "bf16"]) == 1
    assert capsys.readouterr().err == ("error: bf16 was asked for, but Tesla T4 has no native bf16 (compute capability 8.0 "
                                       "or later); train in fp32 (amp=False, --precision fp32).\n")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- fp32 islands under bf16 autocast


@pytest.mark.parametrize("term", ["si_snr_loss", "source_si_snr", "dissimilarity", "similarity"])
def test_loss_terms_are_float32_under_bf16_autocast(term):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 1, 4000, generator=gen).bfloat16()
    b = torch.randn(3, 4, 1, 4000, generator=gen).bfloat16()
    present = torch.ones(3, 4, dtype=torch.bool)
    call = {
        "si_snr_loss": lambda x, y: si_snr_loss(x, y),
        "source_si_snr": lambda x, y: source_si_snr(x, y, present),
        "dissimilarity": lambda x, y: dissimilarity_loss(x.reshape(3, 4, 40, 100), present),
        "similarity": lambda x, y: similarity_loss(x.reshape(3, 4, 40, 100), present),
    }[term]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = call(a, b)
    outside = call(a.float(), b.float())
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, outside, rtol=0, atol=0)


def test_a_bf16_training_step_on_the_cpu_logs_finite_float_terms(tmp_path):
    from metalearn_sep.losses import MetaTasNetObjective

    model = tiny_model()
    stems = torch.randn(4, 4, 1, 3200, generator=torch.Generator().manual_seed(1)) * 0.1
    data = torch.utils.data.TensorDataset(stems.sum(1), stems)
    trainer = Trainer(model, data, config=TrainerConfig(batch_size=2), objective=MetaTasNetObjective(32000),
                      device="cpu", amp=True, progress=False)
    history = trainer.fit(2)
    assert trainer.amp and len(history) == 2
    logged = [k for k in history[-1] if k.startswith("stage")]
    assert logged and all(isinstance(history[-1][k], float) and math.isfinite(history[-1][k]) for k in logged)


def test_running_out_of_memory_is_one_sentence(monkeypatch):
    trainer = Trainer(nn.Conv1d(1, 4, 3), [], config=TrainerConfig(batch_size=2), device="cpu", progress=False)

    def exhausted(model, mixture, stems):
        raise torch.OutOfMemoryError("CUDA out of memory")

    trainer.objective = exhausted
    with pytest.raises(MemoryError, match=r"^cpu ran out of memory at a batch of 2 crops of 800 samples: lower training.batch_size"):
        trainer.train_step(torch.zeros(2, 1, 800), torch.zeros(2, 4, 1, 800))


def test_the_out_of_memory_message_names_the_batch_the_estimate_fits(monkeypatch):
    from metalearn_sep.losses import MetaTasNetObjective

    a_gpu(monkeypatch, "Tesla T4", bf16=False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 15 * GIB})())
    model, objective = tiny_model(), MetaTasNetObjective(32000)
    cost = measure_step(lambda: tiny_model(), objective, 1, 1, 6400)
    fits = largest_batch(cost, 0.95 * 15 * GIB, "ranger")
    message = out_of_memory_message(model, objective, torch.zeros(3, 1, 6400), "ranger", torch.device("cuda"), world=2)
    assert message == (f"Tesla T4 ran out of memory at a batch of 3 crops of 6400 samples per process (6 in all); the estimate "
                       f"fits at most {fits} per process in 15 GiB: set training.batch_size to {2 * fits} or less "
                       "(benchmarks/plan_gpu.py estimates each setting's memory).")


# ----------------------------------------------------------------------------- the cost model


class Affine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(100, 30, bias=False)


def affine_objective(model: Affine, mixture: torch.Tensor, stems: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return model.layer(mixture).sum(), {}


def test_a_step_costs_forward_and_weight_gradient_flops_and_its_saved_input():
    cost = measure_step(Affine, affine_objective, batch=8, channels=1, samples=100)
    # forward 2*8*100*30; backward: only the weight's gradient (the input needs none), the same again
    assert cost.flops == 2 * (2 * 8 * 100 * 30)
    assert cost.parameters == 3000 and cost.batch == 8
    assert cost.activation_bytes == 8 * 100 * 4  # the input, saved for the weight's gradient
    assert cost.input_bytes == (8 * 100 + 8 * 4 * 100) * 4


def test_the_largest_batch_fits_and_a_few_percent_more_does_not():
    def cost(batch: int):
        return measure_step(lambda: MetaTasNet(stages=1, N=32, B=32, H=32, X=2, R=1, spec_channels=16),
                            lambda m, x, s: (m([x])[0].estimates.sum(), {}), batch=batch, channels=1, samples=8000)

    memory = 3 * GIB
    k = largest_batch(cost(2), memory)  # from a step measured at batch 2, extrapolated
    assert k > 100
    assert estimate(cost(k), GPUS["T4"]).peak_bytes <= memory < estimate(cost(int(1.03 * k)), GPUS["T4"]).peak_bytes


# ----------------------------------------------------------------------------- the gpu and paper profiles


def test_the_paper_profile_exists_but_is_never_the_default(monkeypatch):
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.resolve_profile().name == "gpu"
    assert config.resolve_profile("paper").segment_seconds == 8.0 and config.PROFILES["paper"].batch_size == 12
    cfg = config.CourseConfig(config.PROFILES["paper"], torch.device("cpu"), 0, None)
    assert cfg.pick(ci=1, cpu=2, gpu=3) == 3 and cfg.pick(ci=1, cpu=2, gpu=3, paper=4) == 4
    assert config.CONV_TASNET_SIZES["paper"] == {"N": 512, "L": 16, "B": 128, "H": 512, "Sc": 128, "X": 8, "R": 3}


def test_large_gives_both_gpu_profiles_of_a_setting():
    assert large("03", "widths") == {"gpu": SETTINGS["03"]["gpu"]["widths"], "paper": {"N": 440, "B": 160, "H": 160, "X": 6, "R": 3}}
    with pytest.raises(ValueError, match="Chapter '06' has no GPU settings here"):
        large("06", "steps")


def test_every_chapter_of_the_gpu_profile_fits_a_t4_in_twenty_minutes():
    """The gpu profile's promise, by the plan's estimate (benchmarks/plan_gpu.py prints the whole table)."""
    t4 = GPUS["T4"]
    for chapter in ("01", "02", "03", "04", "05"):
        planned = plan(chapter, "gpu")
        minutes = sum(p.minutes(t4) for p in planned)
        assert 3 < minutes <= 20, (chapter, minutes)  # sized to the budget, not far under it
        assert max(p.peak_gib(t4) for p in planned) <= t4.memory_gib, chapter
    assert set(GPU_PROFILES) == {"gpu", "paper"}
