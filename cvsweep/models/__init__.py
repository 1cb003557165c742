"""The models a run config describes, built with Keras, and their size before building, checked
against the data. Imports config and data."""
