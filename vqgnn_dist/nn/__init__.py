"""VQ-GNN's layers and models. Importing the package registers every conv
(:mod:`vqgnn_dist.nn.registry`): the conv modules register theirs where they define them."""

from vqgnn_dist.nn import adapter, convs, transformer  # noqa: F401 - registers the convs
