"""How good a model is: metrics, calibration and slices, behaviour checks, Shapley values, plots."""
