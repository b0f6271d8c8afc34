"""Test-wide settings: no network model hubs, and no Hypothesis deadline (first calls compile Numba kernels)."""

import os

from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile("cures", deadline=None)
settings.load_profile("cures")
