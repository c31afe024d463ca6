"""Data for the course: the synthetic band (``band``), MUSDB18 (``musdb``) and augmentation (``augment``)."""
