"""The fuzz suite's machinery (tests/test_fuzz.py drives it).

- ``values``: the grammar of nasty values and the JSON text they are sent as.
- ``schemas``: valid examples from the OpenAPI document, the Train and Backtest forms,
  and the query and form names the views read.
- ``cases``: one request per call: path parameters, query string, headers, body.
- ``checks``: what every reply must satisfy, and the failures grouped by class.
- ``runner``: sends the cases to an app and keeps the fixtures intact between them.
"""
