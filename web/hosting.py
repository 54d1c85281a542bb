"""API hosting: the hosted model, /predict in the main app, the playground."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("hosting", __name__)
