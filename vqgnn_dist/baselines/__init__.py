"""Sampling baselines of the VQ-GNN paper: NS-SAGE, Cluster-GCN and GraphSAINT-RW.

Plain-torch samplers (PyG's loaders need pyg-lib or torch-sparse) feeding PyG
layers; :func:`train_sampling` returns the metrics schema of
:func:`vqgnn_dist.train.local.train`, :func:`one_step` one training step for
memory measurements.
"""

from vqgnn_dist.baselines.train import IMPLEMENTATION, SAMPLING_METHODS, one_step, train_sampling

__all__ = ["IMPLEMENTATION", "SAMPLING_METHODS", "one_step", "train_sampling"]
