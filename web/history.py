"""Training history: run list, run pages and the seed's JSON API."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("history", __name__)
