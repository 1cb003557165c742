"""Datasets: loading a source, the rules every data path meets, image folders, text sets,
splits. Imports cvsweep.config."""
