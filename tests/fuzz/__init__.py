"""The fuzz suite's machinery (tests/test_fuzz.py drives it).

- ``values``: the grammar of nasty values, by class, and the JSON text they are sent as.
- ``schemas``: valid examples from the OpenAPI document, the Train and Backtest forms,
  and the query and form names the views read.
- ``catalog``: the valid ids the fixtures hold, and one request (``Case``).
- ``bodies``: JSON, forms and uploads for each route, mutated from valid examples.
- ``cases``: paths, query strings and headers; the systematic pass and the random plan.
- ``checks``: what every reply must satisfy, and the failures grouped by class.
- ``runner``: sends the cases to an app and keeps the fixtures intact between them.
"""
