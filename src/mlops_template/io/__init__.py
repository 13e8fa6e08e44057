"""Where the package meets the outside world: files on disk, MLflow runs, GitHub."""
