"""What the seed's 8 cells pin about the sweep's machine: the calibration's identifiability table.

Computed from the machine in the sweep's manifest (only for a calibrated machine whose
sweep has seed cells): the Jacobian of the seed cells' logs with respect to the log of each
prior's cost, at the preset's values (study.calibration.fit.identifiability).  Deterministic:
the model runs on fixed random streams.
"""

from __future__ import annotations

import pandas as pd

from study.calibration.fit import identifiability
from study.engine.machine import Machine
from study.errors import ConfigError
from study.seed import SEED_MACHINE

# small runs: the Jacobian's columns are differences of means on common random numbers
REPLICATES, ROUNDS = 200, 20


def build(manifest: dict, seed: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per-parameter table (name, pinned share, status, source) and the summary (singular
    values, threshold, pinned combinations); empty when it does not apply."""
    # the seed machine as the sweep ran it (its resolved costs), not the base config's default
    machines = manifest.get("resolved", {}).get("machine", {})
    config = next((m for m in machines.values() if isinstance(m, dict) and m.get("name") == SEED_MACHINE),
                  None) if machines else manifest.get("config", {}).get("machine")
    if seed.empty or not isinstance(config, dict) or not config.get("calibrated"):
        return pd.DataFrame(), {}
    try:
        machine = Machine.from_dict(config)
    except ConfigError:
        return pd.DataFrame(), {}
    data = identifiability(machine, replicates=REPLICATES, rounds=ROUNDS).as_dict()
    summary = {k: data[k] for k in ("singular_values", "threshold", "threshold_meaning", "pinned_combinations")}
    summary["machine"] = machine.name
    return pd.DataFrame(data["per_parameter"]), summary
