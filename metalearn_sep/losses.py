"""Training objectives: SI-SNR for Conv-TasNet, the four-term Meta-TasNet objective.

Conv-TasNet is trained to maximise SI-SNR (Luo & Mesgarani 2019, eq. 15: SI-SDR after
removing each signal's mean). In music a stem is often silent in a crop; its SI-SNR is
undefined (there is no target to scale), so silent references are left out of the
average, as the Meta-TasNet code does with its presence mask ``a_{b,i}`` (:func:`presence`).

Meta-TasNet (Samuel, Ganeshan & Naradowsky, ICASSP 2020) trains every stage s with

    L_s = - Σ_i SI-SNR_i  - λ_rec SI-SNR(D(E(x)), x)  + λ_dis D  - λ_sim S

and the total ``Σ_s L_s`` (weight 1 per stage), where, as in the released code:

* ``SI-SNR_i`` (:func:`clamped_si_snr`, :func:`source_si_snr`) has no mean removal and
  clamps each energy to at least 1e-8; it is averaged over the examples where
  instrument i is present.
* the reconstruction term asks the stage's decoder D to invert its encoder E on the
  mixture x (an auto-encoder of the mixture; λ_rec = 0.05).
* D (:func:`dissimilarity_loss`, λ_dis = 3) is the cosine similarity of the absolute
  latents ``|E(s_i)|``, ``|E(s_j)|`` of two different instruments of the same example:
  pushing it down separates the instruments in the latent space.
* S (:func:`similarity_loss`, λ_sim = 2) is the cosine similarity of the latents of the
  same instrument in two different examples: pulling it up groups each instrument.

D and S read the ground-truth stems through the stage encoder, so they only shape the
encoder. :class:`MetaTasNetObjective` wires all of this to the course's
:class:`~metalearn_sep.train.Trainer`: it resamples each batch to every stage's rate,
runs the model and logs every term of every stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import SOURCES
from .audio import fit_length, resample, unit_scale
from .checkpoint import unwrap_model
from .checks import check_rate
from .metrics import si_sdr
from .precision import full_precision
from .models.meta_tasnet import MetaTasNet, Stage, StageOutput

ENERGY_FLOOR = 1e-8
"""The Meta-TasNet code's epsilon: added to ``||s||²`` in α and the floor of both energies."""


def presence(stems: torch.Tensor) -> torch.Tensor:
    """Which stems are present (not exactly silent): ``(batch, source, ...)`` -> ``(batch, source)`` bool."""
    return stems.flatten(2).abs().amax(-1) > 0


def si_snr_loss(
    estimates: torch.Tensor, references: torch.Tensor, present: torch.Tensor | None = None, zero_mean: bool = True
) -> torch.Tensor:
    """Negative SI-SNR, averaged over every (example, source, channel) whose reference is present.

    Args:
        estimates: ``ŝ``, ``(batch, source, channel, time)``.
        references: ``s``, the same shape.
        present: ``(batch, source)`` bool; default :func:`presence` of ``references``.
        zero_mean: remove means first (SI-SNR); ``False`` gives SI-SDR as the Meta-TasNet code uses.

    Returns:
        A scalar; 0 when no reference in the batch is present.
    """
    if present is None:
        present = presence(references)
    with full_precision(estimates.device):  # energies summed over a whole crop: float32 even under bf16 autocast
        values = si_sdr(estimates.float(), references.float(), zero_mean=zero_mean)  # (batch, source, channel)
        weight = present.to(values.dtype).unsqueeze(-1).expand_as(values)
        return -(values * weight).sum() / weight.sum().clamp(min=1)


# ----------------------------------------------------------------------------- the four terms


def clamped_si_snr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SI-SNR in dB as the Meta-TasNet code computes it, along the last axis.

    ``α = <ŝ, s> / (||s||² + 1e-8)``, ``SI-SNR = 10 log10(max(||α s||², 1e-8) / max(||ŝ − α s||², 1e-8))``:
    no mean removal, and the energies are clamped instead of offset as in
    :func:`metalearn_sep.metrics.si_sdr` (the two differ only for near-silent signals).

    Shapes: ``(..., time)`` twice -> ``(...)``.
    """
    if estimate.shape != reference.shape:
        shapes = f"{tuple(estimate.shape)} and {tuple(reference.shape)}"
        raise ValueError(f"clamped_si_snr: estimate and reference must have the same shape, got {shapes}.")
    alpha = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + ENERGY_FLOOR)
    target = alpha * reference
    target_energy = target.pow(2).sum(-1).clamp(min=ENERGY_FLOOR)
    residual_energy = (estimate - target).pow(2).sum(-1).clamp(min=ENERGY_FLOOR)
    return 10 * (torch.log10(target_energy) - torch.log10(residual_energy))


def source_si_snr(estimates: torch.Tensor, references: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Per-source :func:`clamped_si_snr`, averaged over channels and the examples where the source is present.

    Args:
        estimates: ``ŝ`` ``(batch, K, channel, time)``.
        references: ``s``, the same shape.
        present: ``a`` ``(batch, K)`` bool.

    Returns:
        ``(K,)``; 0 for a source that is present in no example (it then adds nothing to the loss).
    """
    with full_precision(estimates.device):  # energies summed over a whole crop: float32 even under bf16 autocast
        values = clamped_si_snr(estimates.float(), references.float())  # (batch, K, channel)
        weight = present.to(values.dtype).unsqueeze(-1).expand_as(values)
        return (values * weight).sum((0, 2)) / weight.sum((0, 2)).clamp(min=1)


def _check_latents(latents: torch.Tensor, present: torch.Tensor, what: str) -> None:
    if not isinstance(latents, torch.Tensor) or latents.dim() != 4:
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"{what} expects latents of shape (batch, instruments, N, frames), got {got}.")
    if not isinstance(present, torch.Tensor) or tuple(present.shape) != tuple(latents.shape[:2]):
        got = tuple(present.shape) if isinstance(present, torch.Tensor) else type(present).__name__
        raise ValueError(f"{what} expects a presence mask of shape {tuple(latents.shape[:2])} (batch, instruments), got {got}.")


def _unit(latents: torch.Tensor) -> torch.Tensor:
    """Each latent frame scaled to unit length along N (zero frames stay zero), in float32."""
    return F.normalize(latents.float(), dim=2, eps=ENERGY_FLOOR)


def dissimilarity_loss(latents: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """D: mean cosine similarity of ``|Z_{b,i,t}|`` and ``|Z_{b,j,t}|`` over instrument pairs i < j.

    Args:
        latents: ``Z`` ``(batch, K, N, frames)``, the ground-truth stems through the stage encoder.
        present: ``a`` ``(batch, K)`` bool; pairs with a silent stem are left out.

    Returns:
        A scalar in [0, 1]: summed over the K(K−1)/2 pairs and the batch, divided by the
        number of (example, pair) with both stems present, averaged over frames; 0 if there is no such pair.
    """
    _check_latents(latents, present, "dissimilarity_loss")
    with full_precision(latents.device):  # cosines in float32, even under bf16 autocast
        unit = _unit(latents.abs())
        cosine = torch.einsum("bint,bjnt->bijt", unit, unit)  # (batch, K, K, frames)
    first, second = torch.triu_indices(latents.shape[1], latents.shape[1], offset=1, device=latents.device)
    weight = (present[:, first] & present[:, second]).to(cosine.dtype)  # (batch, pairs)
    total = (cosine[:, first, second] * weight.unsqueeze(-1)).sum((0, 1))  # (frames,)
    return (total / weight.sum().clamp(min=1)).mean()


def similarity_loss(latents: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """S: mean cosine similarity of ``Z_{b,i,t}`` and ``Z_{b−1,i,t}`` (the batch rolled by one).

    Args:
        latents: ``Z`` ``(batch, K, N, frames)``, the ground-truth stems through the stage encoder.
        present: ``a`` ``(batch, K)`` bool; pairs with a silent stem are left out.

    Returns:
        A scalar in [−1, 1] (no absolute value here): summed over instruments and the
        batch, divided by the number of (example, instrument) with both stems present,
        averaged over frames; 0 if there is no such pair. With a batch of one the
        example is compared with itself (S = 1), as in the original code.
    """
    _check_latents(latents, present, "similarity_loss")
    with full_precision(latents.device):
        unit = _unit(latents)
        cosine = (unit * unit.roll(1, dims=0)).sum(2)  # (batch, K, frames)
    weight = (present & present.roll(1, dims=0)).to(cosine.dtype)
    total = (cosine * weight.unsqueeze(-1)).sum((0, 1))
    return (total / weight.sum().clamp(min=1)).mean()


@dataclass
class StageLoss:
    """The terms of one stage's loss ``L_s`` (scalars; a term whose λ is 0 is None, never computed).

    Attributes:
        loss: ``L_s``, differentiable.
        si_snr: ``(K,)`` SI-SNR_i per instrument (see :func:`source_si_snr`).
        reconstruction: SI-SNR of ``D(E(x))`` against the mixture x (``E(x)`` is the
            stage output's ``mixture_latent``: no second encoder pass).
        dissimilarity: D.
        similarity: S.
    """

    loss: torch.Tensor
    si_snr: torch.Tensor
    reconstruction: torch.Tensor | None = None
    dissimilarity: torch.Tensor | None = None
    similarity: torch.Tensor | None = None

    def logs(self, prefix: str, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{prefix}sisnr_<source>`` (NaN for a source present nowhere in the batch), ``{prefix}rec/dis/sim``.

        Detached 0-dim tensors on the loss's device, not Python floats: reading each one would
        wait for the GPU a dozen times per step; the Trainer copies them all at once.
        """
        values = torch.where(present.any(0), self.si_snr.detach(), torch.nan)
        logs = {f"{prefix}sisnr_{name}": value for name, value in zip(SOURCES, values.unbind())}
        for key, term in (("rec", self.reconstruction), ("dis", self.dissimilarity), ("sim", self.similarity)):
            if term is not None:
                logs[prefix + key] = term.detach()
        return logs


def stage_loss(
    stage: Stage,
    output: StageOutput,
    mixture: torch.Tensor,
    stems: torch.Tensor,
    present: torch.Tensor,
    lambda_rec: float = 0.05,
    lambda_dis: float = 3.0,
    lambda_sim: float = 2.0,
) -> StageLoss:
    """``L_s`` of one Meta-TasNet stage and its terms.

    Args:
        stage: the :class:`~metalearn_sep.models.meta_tasnet.Stage` (its encoder and decoder are reused).
        output: what the stage returned for ``mixture``.
        mixture: x ``(batch, 1, T_s)`` at the stage's rate.
        stems: s ``(batch, K, 1, T_s)`` at the stage's rate.
        present: ``a`` ``(batch, K)`` bool.
        lambda_rec, lambda_dis, lambda_sim: term weights; 0 skips the term.
    """
    si_snr = source_si_snr(output.estimates.float(), stems.float(), present)
    terms = StageLoss(loss=-si_snr.sum(), si_snr=si_snr)
    if lambda_rec:
        decoded = stage.decoder(output.mixture_latent)
        terms.reconstruction = clamped_si_snr(decoded.float(), mixture.float()).mean()
        terms.loss = terms.loss - lambda_rec * terms.reconstruction
    if lambda_dis or lambda_sim:
        batch, K, _, length = stems.shape
        latents = stage.encoder(stems.reshape(batch * K, 1, length)).view(batch, K, -1, output.latents.shape[-1])
        if lambda_dis:
            terms.dissimilarity = dissimilarity_loss(latents, present)
            terms.loss = terms.loss + lambda_dis * terms.dissimilarity
        if lambda_sim:
            terms.similarity = similarity_loss(latents, present)
            terms.loss = terms.loss - lambda_sim * terms.similarity
    return terms


# ----------------------------------------------------------------------------- the Trainer's objective


def _check_weight(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


class MetaTasNetObjective:
    """The Meta-TasNet training objective for :class:`~metalearn_sep.train.Trainer`: ``Σ_s L_s``.

    The Trainer hands over one batch at the dataset's rate ``data_rate``: mixture
    ``(batch, C, T)`` and stems ``(batch, 4, C, T)``. Channels are separated independently
    (folded into the batch, so with stereo data S also compares the two channels of one
    song), as the original separates left and right; the paper trains on mono examples
    (see :class:`metalearn_sep.data.augment.AugmentedDataset`). For each
    stage s the mixture and stems are resampled (torchaudio, skipped when the rate
    already matches) to ``model.sample_rates[s]`` and cropped to ``T_0 * 2**s`` samples,
    T_0 the largest multiple of the model's stride (20 samples at 8 kHz) that fits. The
    presence mask ``a`` comes from the stems at ``data_rate``, shared by all stages.
    Each example is divided by its mixture's standard deviation first, as the original
    normalises every track and as :func:`metalearn_sep.separate.separate` normalises its
    input (the losses are scale invariant; the network's input level is not, and the
    spectrogram branch's log-power features swamp the waveform features at the band's
    raw level). ``estimate`` undoes the scaling.

    Args:
        data_rate: the dataset's sample rate (Hz); at least the last stage's rate (the
            stages are resampled *down* from it, never fabricated by upsampling).
        lambda_rec, lambda_dis, lambda_sim: weights of the reconstruction, dissimilarity
            and similarity terms (paper: 0.05, 3, 2); 0 skips the term entirely.

    ``objective(model, mixture, stems) -> (loss, logs)`` with logs ``stage{s}_sisnr_{source}``,
    ``stage{s}_rec``, ``stage{s}_dis``, ``stage{s}_sim`` (only for terms with λ > 0) and
    ``loss``. ``objective.estimate(model, mixture)`` gives the last stage's estimates at
    ``data_rate``, ``(batch, 4, C, T)``, for validation. The objective holds no state.
    """

    def __init__(self, data_rate: int, lambda_rec: float = 0.05, lambda_dis: float = 3.0, lambda_sim: float = 2.0) -> None:
        self.targets = list(range(len(SOURCES)))  # the model predicts all four, in SOURCES order
        self.data_rate = check_rate(data_rate, "data_rate")
        self.lambda_rec = _check_weight(lambda_rec, "lambda_rec")
        self.lambda_dis = _check_weight(lambda_dis, "lambda_dis")
        self.lambda_sim = _check_weight(lambda_sim, "lambda_sim")

    def _plain(self, model: nn.Module) -> MetaTasNet:
        plain = unwrap_model(model)
        if not isinstance(plain, MetaTasNet):
            raise ValueError(f"MetaTasNetObjective trains a MetaTasNet, got a {type(plain).__name__}.")
        top = max(plain.sample_rates)
        if self.data_rate < top:
            raise ValueError(
                f"The data is at {self.data_rate} Hz but the model's stages run at {plain.sample_rates} Hz: "
                f"give data at {top} Hz or more (the stages are resampled down from the data rate)."
            )
        return plain

    @staticmethod
    def _check_batch(mixture: torch.Tensor, stems: torch.Tensor | None = None) -> None:
        if not isinstance(mixture, torch.Tensor) or mixture.dim() != 3:
            got = tuple(mixture.shape) if isinstance(mixture, torch.Tensor) else type(mixture).__name__
            raise ValueError(f"MetaTasNetObjective expects a mixture of shape (batch, channel, time), got {got}.")
        if stems is not None:
            expected = (mixture.shape[0], len(SOURCES), *mixture.shape[1:])
            if not isinstance(stems, torch.Tensor) or tuple(stems.shape) != expected:
                got = tuple(stems.shape) if isinstance(stems, torch.Tensor) else type(stems).__name__
                raise ValueError(f"MetaTasNetObjective expects stems of shape {expected} (batch, 4, channel, time), got {got}.")

    def estimate(self, model: nn.Module, mixture: torch.Tensor) -> torch.Tensor:
        """The last stage's estimates at ``data_rate``: ``(batch, C, T)`` -> ``(batch, 4, C, T)``."""
        self._check_batch(mixture)
        batch, channels, length = mixture.shape
        mixture = mixture.reshape(batch * channels, 1, length)
        scale = unit_scale(mixture.float())
        plain = self._plain(model)
        inputs = plain.stage_inputs(mixture / scale, self.data_rate, pad=True)
        last = model(inputs)[-1].estimates.float()  # (batch * C, 4, 1, T_last)
        with full_precision(mixture.device):
            last = fit_length(resample(last, plain.sample_rates[-1], self.data_rate), length)
        last = last * scale.unsqueeze(1)
        return last.reshape(batch, channels, len(SOURCES), length).transpose(1, 2)

    def __call__(self, model: nn.Module, mixture: torch.Tensor, stems: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``Σ_s L_s`` on one batch, and the logged terms."""
        self._check_batch(mixture, stems)
        batch, channels, length = mixture.shape
        mixture = mixture.reshape(batch * channels, 1, length)
        stems = stems.transpose(1, 2).reshape(batch * channels, len(SOURCES), 1, length)
        present = presence(stems)
        scale = unit_scale(mixture.float()).unsqueeze(1)
        plain = self._plain(model)
        signals = plain.stage_inputs(torch.cat([mixture.unsqueeze(1), stems], dim=1) / scale, self.data_rate)  # (b, 1 + 4, 1, T_s)
        outputs = model([signal[:, 0] for signal in signals])
        total, logs = 0.0, {}
        for s, (stage, output, signal) in enumerate(zip(plain.stages, outputs, signals)):
            terms = stage_loss(
                stage, output, signal[:, 0], signal[:, 1:], present,
                lambda_rec=self.lambda_rec, lambda_dis=self.lambda_dis, lambda_sim=self.lambda_sim,
            )
            total = total + terms.loss
            logs.update(terms.logs(f"stage{s}_", present))
        logs["loss"] = total.detach()
        return total, logs

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(data_rate={self.data_rate}, lambda_rec={self.lambda_rec}, "
            f"lambda_dis={self.lambda_dis}, lambda_sim={self.lambda_sim})"
        )
