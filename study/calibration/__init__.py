"""Calibration: fitting a machine's event costs to published measurements (the seed's table)."""
