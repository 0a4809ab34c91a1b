"""The run worker (``kiln worker run RUN_ID``): executes one run, talking only HTTP to the API.

It imports no database code and holds no database credentials; its one
secret is the run-scoped token in ``KILN_RUN_TOKEN``. See ``main`` for the
flow, ``client`` for the API calls, ``logship`` for log batching, ``dbt`` for
profiles and dbt's JSON output, ``project`` for checking the project out.
"""
