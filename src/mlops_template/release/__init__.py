"""From a merged model to production: the MLflow registry and its gate, releases, deploy
overlays and their pull requests, and the history of what ran where."""
