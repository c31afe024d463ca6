"""The Meta-TasNet recipe's data augmentation, on any ``(mixture, stems)`` dataset.

Each training example is rebuilt from its stems ``s_i`` (i = drums, bass, other, vocals):

1. a random channel per stem: from stereo stems, left or right is picked independently
   for each of the four stems, giving a mono example (the model is mono);
2. a random gain ``g_i ~ U(0.75, 1.25)`` per stem;
3. the mixture recomputed as ``x = Σ_i g_i s_i`` (never the dataset's own mixture);
4. in every batch, half of the examples replaced by incoherent remixes across songs:
   the k-th of the ``n = int(batch * 0.5 + 0.5)`` remixed examples takes its drums from
   example k, bass from k+1, other from k+2 and vocals from k+3 (indices mod n), and
   the batch is then shuffled (:func:`remix_plan`, :func:`incoherent_remix`).

The presence mask ``a_{b,i}`` (stem i of example b not silent) follows from the
augmented stems: :func:`metalearn_sep.losses.presence` (the objectives compute it).
Gains are positive, so a silent stem stays exactly silent through steps 2-4, and a stem
whose picked channel is silent (hard-panned to the other side) becomes absent.

:class:`AugmentedDataset` wraps a dataset (the synthetic band, MUSDB18, ...). Item i is
a pure function of ``(seed, i)`` and the wrapped item, and a batch a pure function of
``(seed, indices)``: no global random state is read, so a :class:`~metalearn_sep.train.Trainer`
run resumes exactly and DataLoader workers agree. The remix happens in
``__getitems__``, the hook through which a PyTorch DataLoader fetches a whole batch of
indices at once, so no custom ``collate_fn`` is needed. Unlike the original code,
which drew the channel and gains separately at 8, 16 and 32 kHz, one draw is made at
the dataset's rate and the stages are resampled from it, so all stages see the same example.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import SOURCES
from ..checks import check_int, check_seed

GAIN_RANGE = (0.75, 1.25)
"""The recipe's per-stem gain range."""

REMIX_FRACTION = 0.5
"""The recipe's share of each batch replaced by incoherent remixes (``shuffle_p``)."""

_ITEM_STREAM = 0xA0C
"""Tag mixed into each item's seed so the augmentation never reuses a wrapped dataset's crop stream."""

_BATCH_STREAM = 0xBA7
"""Tag mixed into each batch's seed."""


class Augmentation(NamedTuple):
    """The random choices of one example: ``channels[i]`` picked for stem i (None: all kept) and ``gains[i]``."""

    channels: tuple[int, ...] | None
    gains: tuple[float, ...]


def remix_plan(batch_size: int, fraction: float = REMIX_FRACTION) -> torch.Tensor:
    """Which example each stem of each remixed example comes from.

    Returns:
        ``(batch_size, 4)`` int64: row b gives, for each source i, the example whose stem
        i example b takes. With ``n = int(batch_size * fraction + 0.5)``, row ``k < n``
        is ``(k, k+1, k+2, k+3) mod n``; rows ``k >= n`` are unchanged (``(k, k, k, k)``).
    """
    check_int(batch_size, "batch_size")
    fraction = _check_fraction(fraction)
    count = int(batch_size * fraction + 0.5)
    plan = torch.arange(batch_size).unsqueeze(1).repeat(1, len(SOURCES))
    if count:
        plan[:count] = (torch.arange(count).unsqueeze(1) + torch.arange(len(SOURCES))) % count
    return plan


def incoherent_remix(stems: torch.Tensor, fraction: float = REMIX_FRACTION) -> torch.Tensor:
    """Replace the first ``int(batch * fraction + 0.5)`` examples by cross-song remixes (:func:`remix_plan`).

    Shapes: ``(batch, 4, channel, time) -> (batch, 4, channel, time)``; recompute the
    mixture as ``stems.sum(1)``. Not shuffled: :class:`AugmentedDataset` shuffles the batch.
    """
    if not isinstance(stems, torch.Tensor) or stems.dim() != 4 or stems.shape[1] != len(SOURCES):
        got = tuple(stems.shape) if isinstance(stems, torch.Tensor) else type(stems).__name__
        raise ValueError(f"incoherent_remix expects stems of shape (batch, {len(SOURCES)}, channel, time), got {got}.")
    plan = remix_plan(stems.shape[0], fraction).to(stems.device)
    return stems[plan, torch.arange(len(SOURCES), device=stems.device)]


def _check_fraction(fraction: object) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"The remix fraction must be a number in [0, 1], got {fraction!r}.")
    return float(fraction)



class AugmentedDataset(Dataset):
    """A dataset of ``(mixture, stems)`` items, augmented as in the Meta-TasNet recipe (see the module docstring).

    Item i: ``(mixture [C', T], stems [4, C', T])`` with ``C' = 1`` when ``random_channel``
    (else the wrapped C), ``stems[j] = g_j * wrapped_stems[j, c_j]`` and
    ``mixture = stems.sum(0)``. The choices come from a generator seeded with
    ``(seed, i)``: :meth:`augmentation` gives them. A batch fetched by a DataLoader goes
    through :meth:`__getitems__`, which also remixes a ``remix`` share of it and shuffles
    it with a generator seeded with ``(seed, indices)``. Under ``torch.distributed`` each
    rank remixes its own share of the global batch.

    Args:
        dataset: items ``(mixture [C, T], stems [4, C, T])``, each a pure function of its
            index (:class:`~metalearn_sep.data.band.BandDataset`, :class:`~metalearn_sep.data.musdb.MusdbDataset`,
            :class:`~metalearn_sep.data.cache.CachedMusdb`).
        seed: non-negative integer fixing every random choice.
        gain: ``(low, high)`` of the uniform per-stem gain; ``(1, 1)`` turns gains off.
        random_channel: pick one channel per stem (mono output); False keeps all channels.
        remix: share of each batch replaced by incoherent remixes; 0 turns remixing off.

    Wrap only training data: validation should see the songs as they are.
    """

    def __init__(
        self,
        dataset: Dataset,
        seed: int = 0,
        gain: tuple[float, float] = GAIN_RANGE,
        random_channel: bool = True,
        remix: float = REMIX_FRACTION,
    ) -> None:
        numbers = isinstance(gain, Sequence) and len(gain) == 2 and all(
            isinstance(g, (int, float, np.integer, np.floating)) and not isinstance(g, bool) for g in gain
        )
        if not numbers or not 0 < gain[0] <= gain[1] < float("inf"):
            raise ValueError(f"gain must be (low, high) with 0 < low <= high, got {gain!r}.")
        if not isinstance(random_channel, bool):
            raise ValueError(f"random_channel must be True or False, got {random_channel!r}.")
        self.dataset = dataset
        self.seed = check_seed(seed)
        self.gain = (float(gain[0]), float(gain[1]))
        self.random_channel = random_channel
        self.remix = _check_fraction(remix)

    def __len__(self) -> int:
        return len(self.dataset)

    def _index(self, index: object) -> int:
        index = operator.index(index)
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__} index must be in [0, {len(self)}), got {index}.")
        return index

    def _wrapped(self, index: int) -> torch.Tensor:
        item = self.dataset[index]
        stems = item[1] if isinstance(item, (tuple, list)) and len(item) == 2 else None
        if not isinstance(stems, torch.Tensor) or stems.dim() != 3 or stems.shape[0] != len(SOURCES):
            got = tuple(stems.shape) if isinstance(stems, torch.Tensor) else type(item).__name__
            raise ValueError(
                f"AugmentedDataset wraps items (mixture [channel, time], stems [{len(SOURCES)}, channel, time]); "
                f"item {index} has stems {got}."
            )
        return stems

    def augmentation(self, index: int, channels: int) -> Augmentation:
        """The random choices of item ``index`` when the wrapped stems have ``channels`` channels."""
        rng = np.random.default_rng((self.seed, self._index(index), _ITEM_STREAM))
        picked = tuple(int(c) for c in rng.integers(0, channels, size=len(SOURCES))) if self.random_channel else None
        gains = tuple(float(g) for g in rng.uniform(*self.gain, size=len(SOURCES)))
        return Augmentation(picked, gains)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` augmented (channel and gain per stem), without the batch remix."""
        index = self._index(index)
        stems = self._wrapped(index)
        choice = self.augmentation(index, stems.shape[1])
        if choice.channels is not None:
            stems = stems[torch.arange(len(SOURCES)), torch.tensor(choice.channels)].unsqueeze(1)
        stems = stems * torch.tensor(choice.gains, dtype=stems.dtype).view(-1, 1, 1)
        return stems.sum(0), stems

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A batch: the items, the first ``int(len * remix + 0.5)`` remixed across songs, then shuffled."""
        items = [self[i] for i in indices]
        if not self.remix or not items:
            return items
        stems = incoherent_remix(torch.stack([s for _, s in items]), self.remix)
        rng = np.random.default_rng((self.seed, _BATCH_STREAM, *(self._index(i) for i in indices)))
        return [(stems[k].sum(0), stems[k]) for k in rng.permutation(len(items)).tolist()]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.dataset!r}, seed={self.seed}, gain={self.gain}, "
            f"random_channel={self.random_channel}, remix={self.remix})"
        )
