"""Scenarios and simulations from Python (issue 12).

```python
from twin.sim import compare, run, scenarios
scenarios.create(store, "tower", scenario_id="tower")
scenarios.add_edit(store, "tower", {"kind": "add_building", "building": {...}})
base = run(store, "sunlight")                       # main, GB 50180 defaults
plan = run(store, "sunlight", scenario="tower")     # incremental from the base run
c = compare(store, base.id, plan.id)                # per building and per H3 cell
```

Modules: ``engine`` (registry, runner, compare), ``base`` (the simulator interface), ``scenarios`` (branches holding
edits), ``sunlight`` (日照, GB 50180-2018), ``jobs`` (OGC API Processes jobs in worker processes), ``sun`` (NREL SPA,
true solar time, standard days).
"""

from twin.sim import scenarios
from twin.sim.engine import compare, describe, find_run, result_table, run, runs, simulators

__all__ = ["compare", "describe", "find_run", "result_table", "run", "runs", "scenarios", "simulators"]
