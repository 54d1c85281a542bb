"""Backtest page: a model and a CSV in, statistics, charts and exports out."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("backtests", __name__)
