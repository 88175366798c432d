"""Gently undulating terrain (ground elevation about 45-55 m, as in Beijing)."""

from __future__ import annotations

import numpy as np


class Terrain:
    """Sum of a plane and a few long-wavelength sinusoids; vectorised ``z(x, y)``."""

    def __init__(self, rng: np.random.Generator, x0: float, y0: float, side: float):
        self.x0, self.y0, self.side = x0, y0, side
        n = 4
        self.wl = rng.uniform(700.0, 2600.0, n)
        self.dir = rng.uniform(0, np.pi, n)
        self.amp = rng.uniform(0.4, 1.3, n)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        # a regional slope of up to ~2 m per km towards the south-east, capped over the whole area
        slope = rng.uniform(0.0008, 0.0016)
        self.gx, self.gy = -slope * 0.7, slope * 0.7
        self.cap = 3.0 / max(side, 1.0)
        self.base = 50.0

    def z(self, x, y):
        x = np.asarray(x, dtype=np.float64) - self.x0 - self.side / 2
        y = np.asarray(y, dtype=np.float64) - self.y0 - self.side / 2
        gx = np.clip(self.gx, -self.cap, self.cap)
        gy = np.clip(self.gy, -self.cap, self.cap)
        z = self.base + gx * x + gy * y
        for wl, d, a, p in zip(self.wl, self.dir, self.amp, self.phase, strict=True):
            z = z + a * np.sin(2 * np.pi * (x * np.cos(d) + y * np.sin(d)) / wl + p)
        return z
