"""The top navigation: one entry per area, shown once the area has its page."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

# (endpoint, label) in menu order; an endpoint not registered (yet) is left out.
AREAS = (("pages.home", "Home"), ("train.index", "Train"), ("history.index", "History"),
         ("library.index", "Models"), ("backtests.index", "Backtest"),
         ("hosting.index", "API"), ("settings.index", "Settings"))


def init_app(app: Flask) -> None:
    @app.context_processor
    def navigation() -> dict[str, Any]:
        views = current_app.view_functions
        return {"nav_areas": [(endpoint, label) for endpoint, label in AREAS
                              if endpoint in views]}
