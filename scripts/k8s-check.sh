#!/usr/bin/env bash
# deploy/kubernetes/ checked offline: every kustomization (the base and each overlay) is
# rendered and every object it yields validated (scripts/k8s_check.py says how): Kubernetes'
# own kinds against the API schemas that PyPI's kubernetes-validate carries, strictly, for
# the oldest and the newest cluster versions we claim; KEDA's kinds against the models of
# cloudcoil-models-keda (generated from KEDA's CRDs) and a hand check of the redis
# scaler's parameters; references between objects and the restricted Pod Security profile.
#
# No kustomize is packaged for Debian and none is on PyPI, so scripts/k8s_render.py renders
# the subset of kustomize the manifests use (any other field fails the render); where a
# kubectl is installed, its `kubectl kustomize` output must equal that render.
#
# Needs python3 with venv; the validators are installed into target/ on first use and
# reused. Needs no build and no services; takes a few seconds. Ends with `k8s-check: PASS`
# or `FAIL` (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: a new schema release may start rejecting what passes today.
# cloudcoil-models-keda 2.16.1.0 is the newest release that installs on Python 3.11
# (Debian 12's); later ones need Python 3.14.
KUBERNETES_VALIDATE_VERSION=1.37.0
KEDA_MODELS_VERSION=2.16.1.0
# The oldest Kubernetes still maintained when this was written, and the newest schemas.
KUBERNETES_VERSIONS=${IPTRACK_K8S_VERSIONS:-1.32,1.37}
VENV="target/k8s-check-$KUBERNETES_VALIDATE_VERSION-$KEDA_MODELS_VERSION"

if [[ ! -x "$VENV/bin/kubernetes-validate" ]]; then
  echo "== k8s-check: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and cloudcoil-models-keda $KEDA_MODELS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "cloudcoil-models-keda==$KEDA_MODELS_VERSION"
fi

kustomizations=(deploy/kubernetes/base)
for overlay in deploy/kubernetes/overlays/*/; do
  kustomizations+=("${overlay%/}")
done
exec "$VENV/bin/python" scripts/k8s_check.py "$KUBERNETES_VERSIONS" "${kustomizations[@]}"
