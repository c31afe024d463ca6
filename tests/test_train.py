"""The Trainer: exact resume, atomic checkpoints, clear errors, optimisers and schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from metalearn_sep.checkpoint import load_checkpoint, read_checkpoint
from metalearn_sep.optim import Lookahead, build_optimizer, build_schedule, schedule_factor
from metalearn_sep.train import StepBatchSampler, Trainer, TrainerConfig, evaluate


class TinySeparator(nn.Module):
    """A small conv model with dropout, so that RNG state matters for exact resume."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.config = {"hidden": hidden}
        self.net = nn.Sequential(nn.Conv1d(1, hidden, 5, padding=2), nn.PReLU(), nn.Dropout(0.2), nn.Conv1d(hidden, 4, 5, padding=2))

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(mixture), dim=1).unsqueeze(2) * mixture.unsqueeze(1)


def toy_data(n: int = 48, length: int = 400, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 8000
    freqs = torch.tensor([150.0, 1000.0, 2500.0, 3600.0]).view(1, 4, 1, 1)
    phase = torch.rand(n, 4, 1, 1, generator=g) * 6.28
    stems = torch.sin(2 * math.pi * freqs * t + phase) * torch.rand(n, 4, 1, 1, generator=g)
    stems[::5, 1] = 0.0  # some silent bass stems, as in real music
    return TensorDataset(stems.sum(1), stems)


def make(tmp_path, model=None, amp=None, **kw):
    torch.manual_seed(0)
    model = model or TinySeparator()
    config = TrainerConfig(**{**dict(batch_size=4, optimizer="ranger", lr=3e-3, schedule="sgdr", schedule_period=5, warmup_steps=2), **kw})
    return Trainer(model, toy_data(), toy_data(8, seed=1), config, checkpoint=tmp_path / "run.pt", progress=False, device="cpu", amp=amp)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    full = make(tmp_path / "a", valid_every=4)
    full.fit(17)

    first = make(tmp_path / "b", valid_every=4)
    first.fit(7)  # spans an epoch boundary (12 batches per epoch) only after resuming
    del first
    torch.manual_seed(1234)  # a different global RNG state must not matter
    resumed = Trainer.resume(tmp_path / "b" / "run.pt", TinySeparator(), toy_data(), toy_data(8, seed=1), progress=False, device="cpu")
    assert resumed.step == 7
    resumed.fit(17)

    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    # validation runs every 4 steps and at the end of each fit() call (the interrupted run also at step 7)
    assert [h.get("valid_mean") for h in full.history if h["step"] % 4 == 0] == [
        h.get("valid_mean") for h in resumed.history if h["step"] % 4 == 0
    ]
    assert "valid_mean" in resumed.history[6] and "valid_mean" not in full.history[6]


def test_training_improves_separation_on_toy_data(tmp_path):
    trainer = make(tmp_path, valid_every=0, schedule="constant", optimizer="adam", lr=1e-2)
    before = evaluate(trainer.model, toy_data(8, seed=1))["mean"]
    trainer.fit(60)
    after = evaluate(trainer.model, toy_data(8, seed=1))["mean"]
    assert after > before + 3.0


def test_checkpoint_killed_while_saving_keeps_the_previous_file(tmp_path, monkeypatch):
    trainer = make(tmp_path)
    trainer.fit(2)
    path = trainer.save()
    good = path.read_bytes()

    def crash(state, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    assert path.read_bytes() == good
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a temporary file was left behind"


def test_corrupt_truncated_and_foreign_checkpoints_are_named(tmp_path):
    trainer = make(tmp_path)
    trainer.fit(1)
    path = trainer.save()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(truncated, TinySeparator())
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a metalearn-sep checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="hidden=8 in the checkpoint but 16 in the model"):
        load_checkpoint(path, TinySeparator(hidden=16))
    with pytest.raises(ValueError, match="holds a TinySeparator, not a Linear"):
        load_checkpoint(path, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="other training settings: lr="):
        Trainer.resume(path, TinySeparator(), toy_data(), config=TrainerConfig(**{**read_checkpoint(path)["trainer"], "lr": 0.5}),
                       progress=False)


def test_batches_depend_only_on_seed_and_step_and_shard_across_ranks():
    whole = list(StepBatchSampler(20, 4, seed=3, start_step=0, stop_step=12))
    tail = list(StepBatchSampler(20, 4, seed=3, start_step=7, stop_step=12))
    assert whole[7:] == tail
    for epoch in range(2):  # every item exactly once per epoch
        assert sorted(sum(whole[epoch * 5 : epoch * 5 + 5], [])) == list(range(20))
    ranks = [list(StepBatchSampler(20, 4, seed=3, start_step=0, stop_step=12, rank=r, world=2)) for r in range(2)]
    for step, batch in enumerate(whole):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(batch)
    with pytest.raises(ValueError, match="2 processes cannot share a batch of 3 examples"):
        StepBatchSampler(20, 3, 0, 0, 1, world=2)


def test_lookahead_moves_slow_weights_towards_fast_weights():
    p = nn.Parameter(torch.tensor([0.0]))
    inner = torch.optim.SGD([p], lr=1.0)
    opt = Lookahead(inner, k=2, alpha=0.5)
    for _ in range(2):
        opt.zero_grad()
        (-p).sum().backward()  # gradient -1: each fast step adds 1
        opt.step()
    # fast weights reached 2; slow weights move half way: 0 + 0.5 * (2 - 0) = 1
    assert p.item() == pytest.approx(1.0)
    assert opt.slow[0].item() == pytest.approx(1.0)


def test_schedules():
    assert schedule_factor(0, "cosine", period=10) == pytest.approx(1.0)
    assert schedule_factor(5, "cosine", period=10) == pytest.approx(0.5)
    assert schedule_factor(10, "sgdr", period=10) == pytest.approx(0.85)  # restart, peak decayed
    assert schedule_factor(25, "sgdr", period=10) == pytest.approx(0.85**2 * 0.5)
    assert schedule_factor(0, "constant", warmup_steps=4) == pytest.approx(0.25)
    wsd = [schedule_factor(step, "wsd", period=10, decay=0.3) for step in range(12)]  # flat to step 7, 0 from step 10
    assert wsd == pytest.approx([1.0] * 8 + [2 / 3, 1 / 3, 0.0, 0.0])
    with pytest.raises(ValueError, match="wsd schedule decays over a fraction"):
        build_schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), "wsd", period=10, decay=0.0)
    with pytest.raises(ValueError, match="Unknown schedule"):
        schedule_factor(0, "linear")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        build_optimizer([nn.Parameter(torch.zeros(1))], "sgd")


@pytest.mark.parametrize("name, reference", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_fused_adam_on_cpu_takes_the_steps_of_the_plain_one(name, reference):
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(7))]
    plain = [nn.Parameter(p.detach().clone()) for p in ours]
    fused = build_optimizer(ours, name, lr=1e-2, weight_decay=0.1)
    assert fused.defaults["fused"] is True
    other = reference(plain, lr=1e-2, weight_decay=0.1, foreach=False)
    for _ in range(20):
        grads = [torch.randn_like(p) for p in ours]
        for params, optimizer in ((ours, fused), (plain, other)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_amp_is_refused_where_there_is_no_bf16(tmp_path):
    with pytest.raises(ValueError, match="meta has no native bf16"):
        Trainer(nn.Linear(1, 1), toy_data(), device="meta", amp=True, progress=False)


def test_a_resumed_run_may_change_its_worker_count_only(tmp_path):
    trainer = make(tmp_path)
    trainer.fit(2)
    path = trainer.save()
    saved = read_checkpoint(path)["trainer"]
    resumed = Trainer.resume(path, TinySeparator(), toy_data(), config=TrainerConfig(**{**saved, "num_workers": 1}), progress=False)
    assert resumed.step == 2 and resumed.config.num_workers == 1
    with pytest.raises(ValueError, match="seed=0 \\(checkpoint\\) vs 1 \\(now\\)"):
        Trainer.resume(path, TinySeparator(), toy_data(), config=TrainerConfig(**{**saved, "seed": 1}), progress=False)


def test_the_trainer_keeps_its_own_copy_of_the_config(tmp_path):
    config = TrainerConfig(batch_size=4)
    trainer = Trainer(TinySeparator(), toy_data(), config=config, progress=False, device="cpu")
    trainer.config.extra["recipe"] = {"a": 1}
    assert config.extra == {} and trainer.config is not config


def test_a_checkpoint_without_a_newer_constructor_argument_loads_with_its_default(tmp_path):
    from metalearn_sep.checkpoint import model_state, save_checkpoint
    from metalearn_sep.models import ConvTasNet

    torch.manual_seed(0)
    model = ConvTasNet(N=16, L=8, B=8, H=16, Sc=8, X=1, R=1)
    state = model_state(model)
    del state["model_config"]["sample_rate"]  # as written before ConvTasNet recorded its rate
    path = save_checkpoint(state, tmp_path / "old.pt")
    fresh = ConvTasNet(N=16, L=8, B=8, H=16, Sc=8, X=1, R=1)
    load_checkpoint(path, fresh)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    with pytest.raises(ValueError, match="sample_rate=8000 in the checkpoint but 16000 in the model"):
        load_checkpoint(path, ConvTasNet(N=16, L=8, B=8, H=16, Sc=8, X=1, R=1, sample_rate=16000))
