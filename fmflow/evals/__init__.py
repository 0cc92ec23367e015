"""Evaluations: `eval` declarations run by `fmflow eval`.

    functions.py   the metric built-ins (similarity, exact, contains, json_valid)
    dataset.py     an eval's dataset: where it is, the record type of its first lines
    plan.py        an eval declaration read into variants, metrics and a dataset
    runner.py      every variant on every record (checkpointed), then the metrics
    statistics.py  intervals (Wilson, bootstrap) and paired tests (McNemar, paired bootstrap)
    report.py      the results as a table, as JSON;  html.py  the HTML report

Importing this package imports nothing heavy: the checker reads functions.py
and dataset.py.
"""
