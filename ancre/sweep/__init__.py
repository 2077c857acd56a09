"""Sweeps: one YAML file expanded into many validated runs, run here or as a SLURM array.

- ``expand``: the sweep file format, expanded and validated before any run starts.
- ``summary``: which runs are finished; summary.csv and summary.md.
- ``slurm``: the sweep as an sbatch array script.
- ``commands``: the ``ancre sweep`` subcommand.
"""

from ancre.sweep.expand import Sweep, SweepError, SweepRun, load_sweep
from ancre.sweep.slurm import slurm_array_script
from ancre.sweep.summary import is_finished, summary_rows, write_summary

__all__ = [
    "Sweep",
    "SweepError",
    "SweepRun",
    "is_finished",
    "load_sweep",
    "slurm_array_script",
    "summary_rows",
    "write_summary",
]
