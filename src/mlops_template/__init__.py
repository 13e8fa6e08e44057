"""A GitOps ML template: DVC pipeline stages, MLflow tracking and the pieces later jobs build on."""

__version__ = "0.1.0"
