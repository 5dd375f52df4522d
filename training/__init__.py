"""One training run: the loop (loop.py), its checkpoints, the set-up of a run on several ranks
(parallel.py, the one owner of rank sharding), what a run would refuse before it starts
(preflight.py), the typed setting a record carries (setting.py) and the outcome a worker
reports (outcome.py). It knows methods and workloads, never which launcher started it."""
