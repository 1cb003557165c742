"""One sweep or run end to end: the checks before it, the sweep loop and its context, one
trial's flow, Hydra's callbacks, the forked worker pool. The top layer: imports every other."""
