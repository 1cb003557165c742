"""The config schema (the one list of settings), the dataset and objective tables, the
fingerprint. Imports nothing else of cvsweep."""
