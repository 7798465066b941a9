#!/usr/bin/env bash
# A kind cluster to try llmflow's pipelines on Kubernetes, prepared by cluster/overlays/dev.
#
# Needs Docker, kind, kubectl and helm on PATH, and network access to GitHub, Docker Hub and
# the Helm repositories. It is NOT run in this project's CI (no Docker there): the overlay it
# applies is built and validated by tests/test_cluster.py, this script is not.
#
#   cluster/dev/kind.sh            # create cluster `llmflow` and install everything
#   kind delete cluster --name llmflow
#
# Versions are pinned; they match the schemas the tests validate against (../shared/schemas)
# where there is one. Bump them together.
set -euo pipefail

CLUSTER=${CLUSTER:-llmflow}
KIND_NODE=kindest/node:v1.33.1                 # kind v0.29
ARGO_WORKFLOWS=v4.1.2
TRAINING_OPERATOR=v1.9.4                       # PyTorchJob (kubeflow.org/v1)
ENVOY_GATEWAY=v1.7.4                           # brings the Gateway API CRDs
KUBE_PROMETHEUS_STACK=88.6.4                   # prometheus-operator and a Prometheus
PROMETHEUS_ADAPTER=5.1.0                       # custom metrics for the HPA

here=$(cd "$(dirname "$0")" && pwd)

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --image "$KIND_NODE"

# Argo Workflows (cluster install, namespace argo).
kubectl create namespace argo --dry-run=client -o yaml | kubectl apply -f -
kubectl apply --server-side -n argo \
  -f "https://github.com/argoproj/argo-workflows/releases/download/${ARGO_WORKFLOWS}/install.yaml"

# Kubeflow training operator (namespace kubeflow).
kubectl apply --server-side \
  -k "github.com/kubeflow/trainer.git/manifests/overlays/standalone?ref=${TRAINING_OPERATOR}"

# Envoy Gateway, and the GatewayClass the dev overlay's Gateway uses.
helm upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY" \
  -n envoy-gateway-system --create-namespace --wait
kubectl apply -f - <<'YAML'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: eg}
spec: {controllerName: gateway.envoyproxy.io/gatewayclass-controller}
YAML

# Prometheus in namespace monitoring (Service prometheus-operated, as releases/tiny.yaml
# expects), selecting every ServiceMonitor, not only the chart's own.
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null
helm repo update prometheus-community >/dev/null
helm upgrade --install kps prometheus-community/kube-prometheus-stack \
  --version "$KUBE_PROMETHEUS_STACK" -n monitoring --create-namespace --wait \
  --set grafana.enabled=false --set alertmanager.enabled=false \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false

# llmflow's part: namespace, accounts and Roles, quota, policies, WorkflowTemplates, ...
kubectl apply --server-side -k "$here/../overlays/dev"

# The adapter reads the rules ConfigMap the overlay put in namespace monitoring.
helm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter \
  --version "$PROMETHEUS_ADAPTER" -n monitoring --wait \
  --set prometheus.url=http://prometheus-operated.monitoring.svc --set prometheus.port=9090 \
  --set rules.existing=llmflow-prometheus-adapter

echo "ready: create the S3 Secret (README, 'Pointing it at a cluster'), then" \
  "llmflow submit fetch-weights -f releases/tiny.yaml"
