"""The hyperparameter search (`make tune`) and its reports."""
