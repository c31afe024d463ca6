"""Exercises that never stop a chapter: the student's function, the package's reference, and an honest self-check.

In the instructor edition an exercise cell holds a solution between ``### BEGIN SOLUTION`` and
``### END SOLUTION``; the student edition (``scripts/student_edition.py``) replaces it with
:data:`STUB`. The function is decorated with :func:`exercise`, which registers it under its
chapter and number (:data:`EXERCISES` says which reference it is checked against):

* while the body is still the stub, calling the function runs the **reference** instead (and
  says so once), so every later cell of the chapter runs: Run All reaches the end;
* once the student has written a body, calls run the student's code.

The self-check cell that follows runs inside ``with course.self_check(fn):``. For a stub the
cell still runs whole (so every name it defines exists for later cells), its checks stay silent
and it ends with "exercise N (name) is not done yet"; otherwise the checks compare the student's
results with the package's (:func:`metalearn_sep.course.check_close` names the shape, the first
wrong index and both values).

Why the reference comes from the package: the rest of the chapter uses the same function, so
a chapter run with stubs computes what the instructor edition computes.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from . import SOURCES
from .losses import dissimilarity_loss
from .metrics import si_sdr
from .models.enhanced import branch_padding
from .models.meta_tasnet import hand_over

F = TypeVar("F", bound=Callable[..., Any])

STUB = 'raise NotImplementedError("Exercise: write your solution here.")'
"""The line the student edition puts where a solution was."""


def _si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return si_sdr(estimate, reference, eps=eps)


def _block_forward(block: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return block(x)


def frame_count(length: int, kernel: int, stride: int, padding: int) -> int:
    """Frames of a strided convolution: ``(T + 2 p - k) // S + 1`` (PyTorch's ``Conv1d`` output length)."""
    return (length + 2 * padding - kernel) // stride + 1


def generate_weights(embedding: torch.Tensor, bottleneck: torch.nn.Linear, head: torch.nn.Linear,
                     param_shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """A hypernetwork's weights: ``head(bottleneck(e))`` ``(K, P)`` cut into ``(K, *shape)`` pieces in order."""
    flat = head(bottleneck(embedding))
    sizes = [int(torch.Size(shape).numel()) for shape in param_shapes]
    return [piece.reshape(embedding.shape[0], *shape) for piece, shape in zip(flat.split(sizes, dim=1), param_shapes)]


def apply_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """K linear maps at once: ``x`` ``(K, n, C_in)``, ``weight`` ``(K, C_out, C_in)``, ``bias`` ``(K, C_out)`` -> ``(K, n, C_out)``."""
    return torch.einsum("koi,kni->kno", weight, x) + bias[:, None, :]


def generator_cost(weights: int, E1: int = 8, E2: int = 5) -> int:
    """Trained parameters of one generated layer with ``weights`` weights per instrument: E1 E2 + E2 + (E2 + 1) weights."""
    return (E1 * E2 + E2) + (E2 + 1) * weights


def zero_estimate_si_sdr() -> float:
    """SI-SDR (dB) of an all-zero estimate, as :func:`~metalearn_sep.metrics.si_sdr` computes it (its ε makes it defined)."""
    reference = torch.randn(8000, generator=torch.Generator().manual_seed(0))
    return float(si_sdr(torch.zeros(8000), reference))


def equal_stems_mixture_si_sdr() -> float:
    """SI-SDR (dB) of a mixture of four equally loud, mutually orthogonal stems, scored against one of them."""
    t = torch.arange(8000, dtype=torch.float64) / 8000
    stems = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (110, 220, 330, 440)])  # whole cycles: orthogonal
    return float(si_sdr(stems.sum(0), stems[0]))


def receptive_field_seconds() -> float:
    """Seconds at 8 kHz that one mask frame of a Conv-TasNet with L = 16, P = 3, X = 4, R = 2 sees."""
    from .models import ConvTasNet

    return ConvTasNet(N=16, L=16, B=8, H=8, Sc=8, X=4, R=2).receptive_field().seconds(8000)


def fifth_instrument_cost() -> int:
    """Trained parameters one more instrument adds to the released generated ``MetaTasNet()``: an embedding row per stage."""
    from .models import MetaTasNet

    with torch.device("meta"):
        model = MetaTasNet()
    return sum(sum(p.numel() for p in stage.embedding.parameters()) // 4 for stage in model.stages)


def encoder_parameters() -> int:
    """Trained parameters of the encoder of the paper's best Conv-TasNet (N = 512, L = 16): N L weights, no bias."""
    from .models import ConvTasNet

    with torch.device("meta"):
        model = ConvTasNet(N=512, L=16, B=128, H=512, Sc=128, X=8, R=3)
    return sum(p.numel() for p in model.encoder.parameters())


def spectrogram_resolution() -> float:
    """Hz between the bins of stage 0's spectrogram branch at 8 kHz: the rate over its n_fft."""
    from .models.enhanced import EnhancedEncoder

    with torch.device("meta"):
        encoder = EnhancedEncoder(N=440, L=20, stride=20, sample_rate=8000)
    return 8000 / encoder.spectrogram.n_fft


def frames_per_second() -> int:
    """Latent frames per second of the released MetaTasNet's stages (the same at 8, 16 and 32 kHz)."""
    from .models import MetaTasNet

    with torch.device("meta"):
        model = MetaTasNet()
    (frames,) = {rate // stage.encoder.stride for rate, stage in zip(model.sample_rates, model.stages)}
    return frames


def remixed_examples() -> int:
    """How many examples of a batch of 12 the recipe replaces by incoherent remixes."""
    from .data.augment import remix_plan

    plan = remix_plan(12)
    return int((plan != torch.arange(12)[:, None]).any(1).sum())


def learning_rate_after_restart() -> float:
    """Ranger's learning rate right after SGDR's first warm restart, from 1e-3 with the recipe's decay 0.85."""
    from .optim import build_schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = build_schedule(optimizer, "sgdr", period=10, decay=0.85)
    for _ in range(10):
        optimizer.step()
        schedule.step()
    return optimizer.param_groups[0]["lr"]


def cache_gigabytes() -> float:
    """GB a decode cache of ten hours of MUSDB18 takes at 32 kHz: four stereo float32 stems per sample."""
    return len(SOURCES) * 2 * 4 * 32_000 * 10 * 3600 / 1e9


def paper_steps() -> int:
    """Steps of the paper's recipe, as ``configs/meta_tasnet_paper.json`` records them."""
    from pathlib import Path

    from .recipe import load_recipe

    return load_recipe(Path(__file__).resolve().parents[1] / "configs" / "meta_tasnet_paper.json").training["steps"]


def batch_per_process() -> int:
    """Examples each of 4 torchrun processes takes of the one-GPU recipe's batch of 8."""
    from .train import StepBatchSampler

    return len(next(iter(StepBatchSampler(64, 8, seed=0, start_step=0, stop_step=1, rank=0, world=4))))


def abx_p_value() -> float:
    """The one-sided p-value of 6 right out of 8 ABX trials (a guesser's chance of doing as well)."""
    from .listen import binomial_p_value

    return binomial_p_value(6, 8)


def abx_correct_needed() -> int:
    """The fewest right answers out of 8 ABX trials whose p-value is below 0.05."""
    from .listen import binomial_p_value

    return min(k for k in range(9) if binomial_p_value(k, 8) < 0.05)


def half_level_loudness_change() -> float:
    """How many LU BS.1770 integrated loudness changes when a synthetic-band song is played at half its amplitude."""
    from .data.band import synthesize
    from .listen import integrated_loudness

    song = synthesize(1, 44100, 4.0, stereo=True).sum(0)
    return integrated_loudness(0.5 * song, 44100) - integrated_loudness(song, 44100)


def _run_stage(stage: torch.nn.Module, mixture: torch.Tensor, previous: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    output = stage(mixture, previous)
    return output.estimates, output.latents


@dataclass(frozen=True)
class Exercise:
    """One exercise: its number in the chapter, the function name it asks for, and the reference it is checked against."""

    number: int
    name: str
    reference: Callable[..., Any]


_REFERENCES: dict[str, tuple[tuple[str, Callable[..., Any]], ...]] = {
    "00": (("my_si_sdr", _si_sdr), ("predicted_zero_estimate_si_sdr", zero_estimate_si_sdr),
           ("predicted_mixture_si_sdr", equal_stems_mixture_si_sdr)),
    "01": (("my_block_forward", _block_forward), ("predicted_receptive_field", receptive_field_seconds),
           ("predicted_encoder_parameters", encoder_parameters)),
    "02": (("branch_padding", branch_padding), ("frame_count", frame_count),
           ("predicted_spectrogram_resolution", spectrogram_resolution)),
    "03": (("generate_weights", generate_weights), ("apply_linear", apply_linear), ("generator_cost", generator_cost),
           ("predicted_fifth_instrument_cost", fifth_instrument_cost)),
    "04": (("hand_over", hand_over), ("run_stage", _run_stage), ("predicted_frames_per_second", frames_per_second)),
    "05": (("my_dissimilarity", dissimilarity_loss), ("predicted_remixed_examples", remixed_examples),
           ("predicted_learning_rate_after_restart", learning_rate_after_restart)),
    "06": (("predicted_cache_gigabytes", cache_gigabytes), ("predicted_paper_steps", paper_steps),
           ("predicted_batch_per_process", batch_per_process)),
    "07": (("predicted_abx_p_value", abx_p_value), ("predicted_correct_needed", abx_correct_needed),
           ("predicted_half_level_loudness_change", half_level_loudness_change)),
}

EXERCISES: dict[str, tuple[Exercise, ...]] = {
    chapter: tuple(Exercise(k, name, reference) for k, (name, reference) in enumerate(items, 1))
    for chapter, items in _REFERENCES.items()
}
"""Every chapter's exercises, in order."""


def _find(chapter: str, name: str) -> Exercise:
    for item in EXERCISES.get(chapter, ()):
        if item.name == name:
            return item
    known = ", ".join(e.name for e in EXERCISES.get(chapter, ())) or "none"
    raise ValueError(f"Chapter {chapter} has no exercise {name!r} (its exercises: {known}).")


def is_stub(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s body is still the student edition's :data:`STUB` (read from its source)."""
    try:
        return STUB in inspect.getsource(fn)
    except (OSError, TypeError):  # no source to read: judged by what calling it does
        return False


def exercise(chapter: str) -> Callable[[F], F]:
    """Decorate a chapter's exercise function: the student's code once written, the package's reference until then."""

    def register(fn: F) -> F:
        item = _find(chapter, fn.__name__)
        told = []

        def fall_back(*args: Any, **kwargs: Any) -> Any:
            if not told:
                told.append(True)
                print(f"(exercise {item.number}, {item.name}, is not done yet: the chapter uses the package's reference "
                      "implementation meanwhile)")
            return item.reference(*args, **kwargs)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not call.done:
                return fall_back(*args, **kwargs)
            try:
                return fn(*args, **kwargs)
            except NotImplementedError:
                call.done = False
                return fall_back(*args, **kwargs)

        call.done = not is_stub(fn)
        call.exercise = item
        return call  # type: ignore[return-value]

    return register


_QUIET: list[bool] = [False]


def quiet() -> bool:
    """True inside :func:`self_check` of an exercise not done yet: confirmations would compare the reference with itself."""
    return _QUIET[-1]


def confirm(message: str) -> None:
    """Print ``✓ message`` after a passed check, unless :func:`quiet`."""
    if not quiet():
        print(f"✓ {message}")


@contextlib.contextmanager
def self_check(*functions: Callable[..., Any]) -> Iterator[None]:
    """The self-check of the exercise functions given: its cell runs whole either way.

    When one of them is not done yet its calls return the reference's results, so the checks
    inside would compare the reference with itself: they stay silent, and the block ends by
    saying which exercises are not done yet. Otherwise the checks compare the student's
    results with the package's and print what differs.
    """
    waiting = [f.exercise for f in functions if not getattr(f, "done", True)]
    _QUIET.append(bool(waiting))
    try:
        yield
    finally:
        _QUIET.pop()
    for item in waiting:
        print(f"exercise {item.number} ({item.name}) is not done yet: fill it in above, then run that cell and this "
              "one again. Until then the chapter uses the package's reference implementation.")
