"""The command line: argument parsing, one function per verb, and what is printed. No search
logic lives here; it calls :mod:`tune_jobs.run` and :mod:`tune_jobs.report`."""
