"""``handypriors batch --ray``: the bags of a batch as Ray tasks, one CPU each.

Where the tasks run (``--ray ADDRESS``):

* ``auto`` (also plain ``--ray``): an existing cluster, found as Ray finds it: the ``RAY_ADDRESS`` environment
  variable, else the head started on this machine (``ray start --head``);
* ``HOST:PORT``: the head node's address (its GCS port, 6379 by default) of an existing cluster;
* ``local``: a private Ray instance started for this batch with ``--workers`` CPUs and stopped at its end (to try
  Ray on one machine; the process pool of ``--workers`` alone does the same job with less overhead).

On a cluster every worker opens the bags and writes its results by path: the bag folder, the object mesh, the
config and ``--out`` must be on storage every node sees under the same path (NFS or similar), and every node needs
this package and its Python dependencies (the same ``.venv`` layout or a Ray ``runtime_env``). Ray itself is
imported only here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import InvalidValueError

__all__ = ["LOCAL", "run_on_ray"]

#: ``--ray local``: a private single-machine instance.
LOCAL = "local"
#: Object store of a private instance [bytes]: the tasks exchange only small result dicts.
_LOCAL_OBJECT_STORE = 100 * 1024 * 1024


def _init(ray, address: str, workers: int) -> str:
    """Connect to (or start) Ray; returns a description of the cluster for the report."""
    if address == LOCAL:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, object_store_memory=_LOCAL_OBJECT_STORE,
                 log_to_driver=False, configure_logging=False)
        where = f"a private local instance ({max(1, workers)} CPUs)"
    else:
        if address == "auto" and not os.environ.get("RAY_ADDRESS"):
            where = "the Ray head on this machine"
        else:
            where = f"the cluster at {os.environ.get('RAY_ADDRESS') if address == 'auto' else address}"
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise InvalidValueError(f"--ray {address}: no Ray cluster ({' '.join(str(exc).split())[:300]}); start "
                                    "one (`ray start --head`, then RAY_ADDRESS=host:port) or use --ray local") from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return f"Ray {ray.__version__} on {where}: {cpus} CPUs, {len(ray.nodes())} node(s)"


def run_on_ray(address: str, workers: int, args: list[tuple], record: Callable[[dict], None],
               report: Callable[[str], None], task: Callable[..., dict]) -> None:
    """Run ``task(*a)`` for each ``a`` of ``args`` as a Ray task and ``record`` each result dict as it finishes
    (a task that Ray loses becomes a ``failed`` record)."""
    try:
        import ray
    except ImportError:
        raise InvalidValueError("--ray needs Ray, which is not installed: pip install -r requirements.txt (it pins "
                                "ray; on every node of a cluster), or leave out --ray to use the local process "
                                "pool") from None
    report(_init(ray, address, workers))
    try:
        remote = ray.remote(num_cpus=1)(task)
        pending = {remote.remote(*a): a for a in args}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                a = pending.pop(ref)
                try:
                    record(ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - a lost worker / node
                    record({"bag": a[0], "name": Path(a[1]).name, "status": "failed",
                            "message": f"Ray task failed: {' '.join(str(exc).split())[:300]}"})
    finally:
        if address == LOCAL:
            ray.shutdown()
