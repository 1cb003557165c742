"""train(): one run from a run config to a result record, its callbacks, diagnostics,
health scores, provenance, and the killable training process. Imports config, data, models."""
