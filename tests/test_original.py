"""The original Meta-TasNet code's checkpoints: loaded exactly, refused clearly, never unpickled unsafely.

The fixtures (``tests/fixtures/original-meta-tasnet/``, see its README) are checkpoints in the
layout of the paper's released ``best_model.pt``, written by the original code at a small
configuration, with the outputs its ``MultiTasNet.inference`` gave on recorded inputs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

from metalearn_sep import SOURCES
from metalearn_sep.__main__ import main
from metalearn_sep.audio import read_audio, write_audio
from metalearn_sep.checkpoint import load_model, load_original, read_checkpoint
from metalearn_sep.models import MetaTasNet
from metalearn_sep.original import config_from_args, convert_state_dict, from_original, original_key

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "original-meta-tasnet"
RELEASED_TRAINABLE = 45_531_260


def read_original(variant: str) -> dict:
    """The fixture checkpoint ``original_<variant>.pt`` as the original code saved it."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(FIXTURES / f"original_{variant}.pt", weights_only=True)


def save_original(path: Path, state_dict: dict, args: argparse.Namespace) -> Path:
    torch.save({"state_dict": state_dict, "args": args}, path)
    return path


def released_args() -> argparse.Namespace:
    """The ``train.py`` defaults the released model was trained with (the fixture's args at full size)."""
    args = argparse.Namespace(**vars(read_original("generated")["args"]))
    args.N, args.B, args.H, args.layers, args.stack, args.num_mels = 440, 160, 160, 6, 3, 256
    return args


@pytest.mark.parametrize("variant", ["generated", "independent"])
def test_every_stage_computes_what_the_original_computed(variant):
    model = load_original(FIXTURES / f"original_{variant}.pt").eval()
    assert model.config["generated"] == (variant == "generated")
    expected = torch.load(FIXTURES / f"expected_{variant}.pt", weights_only=True)
    with torch.no_grad():
        outputs = model(expected["inputs"])
    assert len(outputs) == len(expected["outputs"]) == 3
    for stage, (ours, theirs) in enumerate(zip(outputs, expected["outputs"])):
        assert ours.estimates.shape == theirs.shape == (1, len(SOURCES), 1, 4000 * 2**stage)
        error = (ours.estimates - theirs).abs().max().item()
        assert error <= 1e-5, f"stage {stage}: max abs error {error:.3g}"
    with torch.no_grad():
        assert torch.equal(model.separate_stages(expected["inputs"]), outputs[-1].estimates)


def test_the_filter_order_is_the_one_difference_that_shows():
    """Without permuting the first fusion conv's columns, stage 0 is already off by about its own size."""
    state = read_original("generated")
    model = MetaTasNet(**config_from_args(state["args"])).eval()
    converted = convert_state_dict(state["state_dict"], model)
    converted["stages.0.encoder.fusion.0.weight"] = state["state_dict"]["stages.0.encoder.bottleneck.0.weight"]
    model.load_state_dict(converted)
    expected = torch.load(FIXTURES / "expected_generated.pt", weights_only=True)
    with torch.no_grad():
        first = model.stages[0](expected["inputs"][0]).estimates
    assert (first - expected["outputs"][0]).abs().max() > 1e-2


def test_every_released_key_maps_with_its_shape():
    released = json.loads((FIXTURES / "released_keys.json").read_text())
    assert len(released) == 1539
    with torch.device("meta"):
        model = MetaTasNet(**config_from_args(released_args()))
        assert model.config == MetaTasNet().config  # the released configuration is our default
        fake = {key: torch.empty(shape) for key, shape in released.items()}
        converted = convert_state_dict(fake, model)
    ours = model.state_dict()
    assert converted.keys() == ours.keys()
    assert all(converted[key].shape == ours[key].shape for key in ours)
    windows = [key for key in released if key.endswith("spectrogram.window")]
    assert len(converted) == len(released) - len(windows) == 1536
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == RELEASED_TRAINABLE
    frozen = sum(math.prod(released[key]) for key in released if key.endswith(("window", ".mean", ".std")))
    assert trainable + frozen == sum(math.prod(shape) for shape in released.values()) == 45_545_602
    model.load_state_dict(converted)


def test_keys_are_renamed_by_role():
    assert original_key("stages.0.masker.input_norm.generator.head.weight") == "stages.0.mask.norm_1.affine.weight"
    assert original_key("stages.2.masker.blocks.17.depthwise.generator.head.bias") == "stages.2.mask.tcn.17.dconv1d.kernel.bias"
    assert original_key("stages.1.masker.blocks.0.skip.weight") == "stages.1.mask.tcn.0.skip_out.conv.weight"
    assert original_key("stages.1.masker.mask_norm.bias") == "stages.1.mask.norm_4.group_norm.bias"
    assert original_key("stages.1.masker.skip_prelu.weight") == "stages.1.mask.prelu_3.weight"
    assert original_key("stages.0.encoder.spectrogram.shift") == "stages.0.encoder.spectrogram.affine_bias"
    assert original_key("stages.0.decoder.expand.0.weight") == "stages.0.decoder.bottleneck.0.weight"
    assert original_key("stages.0.embedding.weight") == "stages.0.instrument_embedding.weight"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("stages.1.mask.tcn.0.norm_2.affine.bias"), "lacks 'stages.1.mask.tcn.0.norm_2.affine.bias'"),
        (lambda sd: sd.pop("stages.2.encoder.spectrogram.window"), "lacks 'stages.2.encoder.spectrogram.window'"),
        (lambda sd: sd.__setitem__("stages.0.mask.extra.weight", torch.zeros(2)), "has 'stages.0.mask.extra.weight', which"),
        (lambda sd: sd.__setitem__("stages.0.encoder.spectrogram.mean", torch.zeros(513)),
         r"'stages.0.encoder.spectrogram.mean' has shape \(513,\), but this configuration needs \(1, 513, 1\)"),
        (lambda sd: sd.__setitem__("stages.2.decoder.filters.1.weight", torch.zeros(48, 1, 80)),
         r"'stages.2.decoder.filters.1.weight' has shape \(48, 1, 80\), but this configuration needs \(24, 1, 160\)"),
        (lambda sd: sd.__setitem__("stages.1.encoder.spectrogram.window", torch.ones(2048)),
         "'stages.1.encoder.spectrogram.window' is not a Hann window of 2048 samples"),
    ],
    ids=["missing", "missing-window", "extra", "per-bin-shape", "mis-shaped", "not-hann"],
)
def test_a_state_dict_that_does_not_fit_is_refused_naming_the_key(tmp_path, edit, message):
    state = read_original("generated")
    edit(state["state_dict"])
    path = save_original(tmp_path / "edited.pt", state["state_dict"], state["args"])
    with pytest.raises(ValueError, match=message) as refusal:
        load_original(path)
    assert str(path) in str(refusal.value)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("residual_bias", True, r"args.residual_bias=True is not supported: .* models only residual_bias=False"),
        ("dropout", 0.1, r"args.dropout=0.1 is not supported: .* models only dropout=0.0"),
        ("layers", 0, r"args.layers must be a positive integer, got 0"),
        ("independent_params", "no", r"args.independent_params must be True or False, got 'no'"),
    ],
)
def test_arguments_the_model_cannot_honour_are_refused_naming_the_key(tmp_path, key, value, message):
    state = read_original("generated")
    setattr(state["args"], key, value)
    path = save_original(tmp_path / "args.pt", state["state_dict"], state["args"])
    with pytest.raises(ValueError, match=message):
        load_original(path)
    with pytest.raises(ValueError, match=message):
        load_model(path)


def test_missing_arguments_and_unbuildable_ones_are_refused():
    state = read_original("generated")
    args = vars(state["args"]).copy()
    del args["num_mels"]
    with pytest.raises(ValueError, match="args lack 'num_mels', which sets spec_channels"):
        from_original(state["state_dict"], args)
    with pytest.raises(ValueError, match="do not build a MetaTasNet .*N must be divisible by 8"):
        from_original(state["state_dict"], {**vars(state["args"]), "N": 20})


class TouchesAFile:
    """An object whose unpickling would create a file: what a malicious checkpoint could do instead."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return open, (str(self.target), "w")


def test_a_pickle_carrying_anything_else_is_refused_and_never_run(tmp_path):
    target = tmp_path / "pwned.txt"
    state = read_original("generated")
    path = save_original(tmp_path / "unsafe.pt", state["state_dict"], TouchesAFile(target))
    for load in (load_original, load_model, read_checkpoint):
        with pytest.raises(ValueError, match=r"is not a readable checkpoint: its pickle carries io\.open, which was not loaded because") as refusal:
            load(path)
        assert str(refusal.value).count(". ") == 0 and str(refusal.value).endswith(".")  # one sentence
        assert not target.exists()
    # the allow-list is scoped to the call, not registered for the whole process
    assert argparse.Namespace not in torch.serialization.get_safe_globals()


def test_a_file_saved_by_the_original_training_loop_loads(tmp_path):
    """train.py saves the epoch, step count and optimizer state beside the weights, and more args than the model's."""
    state = read_original("independent")
    args = argparse.Namespace(**vars(state["args"]), base_directory=".", directory="checkpoints/x", seed=42, threads=10)
    optimizer = {"state": {0: {"step": 3, "exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-3, "betas": (0.95, 0.999), "params": [0]}]}
    path = tmp_path / "best_checkpoint"
    torch.save({"epoch": 7, "state_dict": state["state_dict"], "optimizer": optimizer, "steps": 9000, "args": args}, path)
    model, recipe = load_model(path)
    assert not model.config["generated"] and recipe is None


def test_layouts_are_told_apart(tmp_path):
    model, recipe = load_model(FIXTURES / "original_generated.pt")
    assert isinstance(model, MetaTasNet) and recipe is None
    assert model.config == MetaTasNet(**config_from_args(read_original("generated")["args"])).config
    with pytest.raises(ValueError, match="is a checkpoint of the original Meta-TasNet code, not a course one"):
        read_checkpoint(FIXTURES / "original_generated.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for load in (load_model, read_checkpoint):
        with pytest.raises(ValueError, match="is not a metalearn-sep checkpoint"):
            load(foreign)
    with pytest.raises(ValueError, match="is not a checkpoint of the original Meta-TasNet code"):
        load_original(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_original(tmp_path / "missing.pt")


def test_the_command_line_separates_with_an_original_checkpoint(tmp_path, capsys):
    song = tmp_path / "song.wav"
    write_audio(song, 0.3 * torch.randn(2, 44100, generator=torch.Generator().manual_seed(3)), 44100)
    status = main(["separate", str(song), "--checkpoint", str(FIXTURES / "original_generated.pt"), "--out", str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err
    for source in SOURCES:
        stem, rate = read_audio(tmp_path / "out" / "song" / f"{source}.wav")
        assert rate == 44100 and stem.shape == (2, 44100) and torch.isfinite(stem).all()
