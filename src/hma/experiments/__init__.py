"""hma.experiments: the paper-reproduction harness, the layer just under the CLI.

Each ``hma experiment NAME`` recipe (:mod:`hma.experiments.recipes`) trains and evaluates runs
at CPU scale and tabulates them; :mod:`hma.experiments.results` renders and replaces a section
of a results file whose path the caller gives (the CLI passes the repository's document of
results: no code here names it). Policy ranking across simulators, synthetic data for behaviour cloning and the
training curve of one run are experiments too.
"""
