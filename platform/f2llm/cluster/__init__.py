"""Talking to a Kubeflow cluster: registering the compiled pipeline and starting runs."""
