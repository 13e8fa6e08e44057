"""The baseline: the Flask snippet from the seed document, made to run on our model.

Kept as close to the seed as possible: load a joblib file at import, one route, parse JSON
with force=True, predict, jsonify. The one change: our model is a scikit-learn Pipeline over
named columns, so the record becomes a one-row DataFrame instead of a bare list. Served by
Flask's development server (`SEED_MODEL=MODEL python seed_flask_app.py PORT`), or by gunicorn.

The app scores the model as it finds it. `make bench-serve` gives it (SEED_MODEL) the same
copy of models/model.joblib with every `n_jobs` set to 1 that every scikit-learn server gets
(fairness.py): not the thread pool params.yaml's `n_jobs: -1` would start for each row.
"""

import os
import sys

import joblib
import pandas as pd
from flask import Flask, jsonify, request

model = joblib.load(os.environ.get("SEED_MODEL", "models/model.joblib"))
app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json(force=True)
    prediction = model.predict(pd.DataFrame([data["input"]]))
    return jsonify({"prediction": prediction[0]})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), debug=False)
