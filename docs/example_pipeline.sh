#!/usr/bin/env bash
# An example CI/CD pipeline for ModelDeck, using the `modeldeck` CLI alone (see docs/pipeline.md):
#   train a tiny scikit-learn model -> save it with skops -> push it and convert it to ONNX, waiting for parity
#   -> deploy the ONNX version to staging -> smoke-test it there -> promote it to production.
# Every step fails the pipeline on its own exit code; a failed parity report stops it with exit code 6.
#
# Needs: MODELDECK_URL and MODELDECK_TOKEN (a developer's token; an admin's when production is protected),
# `modeldeck` on the PATH (or MODELDECK=...), and a Python with scikit-learn and skops (PYTHON=...).
set -euo pipefail

: "${MODELDECK_URL:?set MODELDECK_URL, e.g. http://127.0.0.1:8000}"
: "${MODELDECK_TOKEN:?set MODELDECK_TOKEN to an API token of the team}"
MODEL=${MODEL:-demo/iris}
STAGING=${STAGING:-iris-staging}
PRODUCTION=${PRODUCTION:-iris-prod}
MODELDECK=${MODELDECK:-modeldeck}
PYTHON=${PYTHON:-python3}
REASON=${REASON:-"pipeline ${CI_PIPELINE_ID:-local} ($(date -u +%Y-%m-%dT%H:%M:%SZ))"}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Read one value out of a `--json` document: json_get FILE 'expression on d'.
json_get() { "$PYTHON" -c "import json, sys; d = json.load(open(sys.argv[1])); print($2)" "$1"; }

echo "== 1. train and save with skops"
"$PYTHON" - "$WORK" <<'PY'
import json
import sys
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

work = Path(sys.argv[1])
x, y = load_iris(return_X_y=True)
x = x.astype(np.float32)
model = LogisticRegression(max_iter=500).fit(x, y)
sio.dump(model, work / "iris.skops")
# The sample is what parity (and drift) is checked on: rows like the ones production will see.
(work / "sample.json").write_text(json.dumps({"input": x[::5].tolist()}))
# The smoke check: a few rows and the labels the trained model gives them here.
rows = x[[0, 50, 100]]
(work / "smoke.json").write_text(json.dumps({"input": rows.tolist()}))
(work / "expected.json").write_text(json.dumps(model.predict(rows).tolist()))
PY

echo "== 2. push, convert to ONNX and wait for the parity report"
status=0
"$MODELDECK" push "$WORK/iris.skops" --model "$MODEL" --sample "$WORK/sample.json" \
    --convert onnx --wait --description "$REASON" --json >"$WORK/push.json" || status=$?
case $status in
    0) ;;
    6)
        echo "PARITY FAILED: the ONNX conversion does not give the trained model's answers; not deploying." >&2
        json_get "$WORK/push.json" 'd["error"]["message"]' >&2
        exit 6
        ;;
    *)
        echo "push failed with exit code $status (see above)" >&2
        exit "$status"
        ;;
esac
uploaded=$(json_get "$WORK/push.json" 'd["version"]["number"]')
version=$(json_get "$WORK/push.json" 'd["conversions"][0]["version"]["number"]')
echo "uploaded v$uploaded, converted to ONNX as v$version (parity passed)"

echo "== 3. deploy v$version to $STAGING"
"$MODELDECK" deploy "$STAGING" --model "$MODEL" --version "$version" --reason "$REASON"

echo "== 4. smoke-test $STAGING"
"$MODELDECK" --json predict "$STAGING" --json "$WORK/smoke.json" --version "$version" >"$WORK/answer.json"
"$PYTHON" - "$WORK" <<'PY'
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
answer = json.loads((work / "answer.json").read_text())
expected = json.loads((work / "expected.json").read_text())
labels = next(output["data"] for output in answer["outputs"] if output["name"] == "label")
if labels != expected:
    sys.exit(f"smoke check failed: staging answered {labels}, the trained model {expected}")
print(f"staging v{answer['model_version']} answers {labels}, as the trained model does")
PY

echo "== 5. promote v$version to $PRODUCTION"
status=0
"$MODELDECK" status "$PRODUCTION" --json >/dev/null 2>&1 || status=$?
case $status in
    0) "$MODELDECK" promote "$PRODUCTION" "$version" --reason "$REASON" ;;
    3) "$MODELDECK" deploy "$PRODUCTION" --model "$MODEL" --version "$version" --protected --reason "$REASON" ;;
    *)
        echo "cannot read $PRODUCTION (exit code $status)" >&2
        exit "$status"
        ;;
esac
"$MODELDECK" status "$PRODUCTION"
