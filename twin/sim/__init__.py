"""Scenarios and simulators (issue 12): results as layers. ``sun``: the solar position (NREL SPA), true solar
time and the standard days of the sunlight simulator."""
