"""The benchmark job: VQ-GNN beside full-graph training and the sampling baselines.

``vqgnn-dist bench`` / ``jobs/bench.py`` (see :mod:`vqgnn_dist.bench.cli`) trains
every method in its own process on the same graph and seeds and reports
accuracy, time per epoch and to accuracy, inference time, peak memory at a
fixed number of nodes and of messages per batch, bytes moved by the
distributed run, scaling with graph size and the achieved FLOP rate.

Modules: ``flops`` (FLOP counts and the machine's matmul rate), ``methods``
(training and one measured step per method), ``runner`` (one process per task),
``report`` (tables, fits, plots). Peak tensor memory is measured by
:mod:`vqgnn_dist.train.memory`, which training uses too.
"""
