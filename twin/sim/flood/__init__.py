"""Pluvial flood simulation (issue 15): 2-D shallow water on the city's terrain with buildings as walls, land-cover
roughness and infiltration, rain (a scenario's rainfall event or a design storm), drainage and inflows.

Modules: ``solver`` (the driver, domain and mass balance), ``inertial`` and ``godunov`` (the two schemes' kernels),
``storms`` (Chicago design storms, Beijing's storm-intensity formula), ``tables`` (default Manning n and losses per
land-cover class), ``domain`` (the grid from a store state or from a user's files), ``simulator`` (the engine's
``flood`` simulator: outputs, per-building and per-road results). See docs/flood.md.
"""
