"""Executors (where a trial trains: here or on RunPod), the remote job protocol (the
payload a worker accepts) and Ctrl-C (stopping what executors started). Imports config, data,
models, training."""
