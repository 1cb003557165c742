"""cvsweep: declarative hyperparameter sweeps for Keras image classifiers."""
