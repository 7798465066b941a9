"""Manifests that launch distributed training: PyTorchJob (Kubeflow v1) and TrainJob (v2)."""
