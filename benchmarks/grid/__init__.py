"""The grid: many runs. `execute` expands a profile into runs and trains them locally or on
Dask (resumable: a completed run is never trained again), `status` says how far a grid is without
running anything, `locks` keeps two processes off the same run folder or device, `dask_cluster`
connects to a Dask scheduler and tells whether a lock's Dask owner lives,
`migrate_splits` moves older run folders' own split copies to shared split files."""
