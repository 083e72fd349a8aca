"""A Dask cluster for the work rules fan out: reference models, first.

``--dask-scheduler tcp://host:8786`` joins a running cluster; ``--workers N`` starts a local
one (a scheduler and N worker processes) for the run. The model never crosses as a loaded
object: each task receives the model file's bytes, checks their hash, scans them, asks the
same load gate and loads them with the same loader in the same isolated worker as a local
run; only plain parameters go out and plain arrays come back.
"""

from mlaudit.distributed.cluster import Cluster, ClusterSettings, open_cluster

__all__ = ["Cluster", "ClusterSettings", "open_cluster"]
