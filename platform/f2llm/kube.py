"""The Kubernetes API from a pipeline step: the pod's service account in a cluster, else KUBECONFIG."""

from __future__ import annotations

import os
from pathlib import Path

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def current_namespace() -> str:
    """The namespace this pod runs in (its service account's), else the kubeconfig context's."""
    if SA_NAMESPACE.exists():
        return SA_NAMESPACE.read_text().strip()
    from kubernetes import config

    _, context = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
    return context["context"].get("namespace", "default")


def load_api():
    """CustomObjectsApi from the pod's service account in a cluster, else from KUBECONFIG."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:  # the client reads KUBECONFIG once, at import: read it now
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.CustomObjectsApi()


def load_core_api(custom=None):
    """CoreV1Api (pods, logs) on the same connection as `custom` (a CustomObjectsApi), else a new one."""
    from kubernetes import client

    return client.CoreV1Api((custom or load_api()).api_client)
