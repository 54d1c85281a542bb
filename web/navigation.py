"""The top navigation: one entry per area, shown once the area has its page."""

from __future__ import annotations

from typing import Any, NamedTuple

from flask import Flask, current_app, request

# (endpoint, label) in menu order; an endpoint not registered (yet) is left out.
AREAS = (("pages.home", "Home"), ("train.index", "Train"), ("live.page", "Live"),
         ("history.index", "History"), ("experiments.index", "Experiments"),
         ("leaderboard.index", "Leaderboard"),
         ("library.index", "Models"), ("backtests.index", "Backtest"),
         ("hosting.index", "API"), ("alerts.index", "Alerts"), ("settings.index", "Settings"))


class NavItem(NamedTuple):
    endpoint: str
    label: str
    active: bool  # the page shown belongs to this area (same blueprint)


def nav_items(views: dict[str, Any], blueprint: str | None) -> list[NavItem]:
    """The menu for a page of ``blueprint``: registered areas only, the current one marked
    (base.html gives it the ``active`` class: underlined, or highlighted on a phone)."""
    return [NavItem(endpoint, label, blueprint == endpoint.split(".")[0])
            for endpoint, label in AREAS if endpoint in views]


def init_app(app: Flask) -> None:
    @app.context_processor
    def navigation() -> dict[str, Any]:
        return {"nav_areas": nav_items(current_app.view_functions, request.blueprint)}
