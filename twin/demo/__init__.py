"""Deterministic sample-city generator (Beijing, CGCS2000 / EPSG:4548) with ground truth.

>>> from twin.demo import generate, SIZES
>>> manifest = generate(Path("demo"), size="small", seed=7)
"""

from .generate import generate
from .sizes import SIZES

__all__ = ["SIZES", "generate"]
