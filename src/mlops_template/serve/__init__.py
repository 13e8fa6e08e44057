"""The prediction service. Imports neither mlflow, dvc nor the pipeline stages, so it starts
fast and ships in a small image: it needs the column specs (contract/spec.py), the model file and
its recorded sha256 (storage.py), and its settings (config/)."""
