"""metalearn-sep: the helper package of a course that rebuilds Meta-TasNet step by step.

The notebooks in ``notebooks/`` teach; this package holds the tested code they build
and reuse. Sources are always in :data:`SOURCES` order (the MUSDB18 stem order and the
order of the original Meta-TasNet code).
"""

__version__ = "0.1.0"

SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
"""The four MUSDB18 targets, in the order every tensor of this package uses."""
