"""Tasks: what is learnt (node classification, inductive, link prediction), written once
for every placement (:mod:`vqgnn_dist.tasks.base`)."""
