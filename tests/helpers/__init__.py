"""What the tests share, one home each (test modules never import each other):

- ``paths``: the repository's folders and data files.
- ``apps``: the dashboard app over a test's folders, the signed-in variant, JSON errors.
- ``models``: the tiny PPO config, training helpers and the session-wide trained models
  (conftest.py serves them as ``tiny_ppo``, ``smoke_xgb``, ``tiny_xgb``; copy one with
  ``copy_model`` before changing it).
- ``runs``: run-store rows with known metrics, for history pages.
- ``browser``: screenshots and chart checks for tests/browser.
- ``fake_model_type``, ``synthetic``, ``training_stubs``, ``bt_reference``: a test-only
  model type, learnable bars, a stand-in training child, a reference backtester.
"""
