"""The experiment machinery: configs and their hashes, YAML profiles, the result store, the work of
one run (:mod:`.tasks`) and the two executors that schedule it, locally (:mod:`.grid`) or on a Dask
cluster (:mod:`.cluster`). Imports the science core; the core never imports this package."""
