"""What a sweep leaves for people: live progress, the summary, plots, report.html.
Imports config, training, study."""
