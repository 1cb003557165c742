"""The Optuna study: its identity (one study per experiment), the search space, storage,
resume and heartbeats, and what its trials record. Imports config and data."""
