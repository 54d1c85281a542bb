"""Model library: every saved model, its page, deletion."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("library", __name__)
