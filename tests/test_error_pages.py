"""One set of error handlers for both apps (web/errors.py): the JSON body on program
paths, a styled page (templates/errors/error.html) for people everywhere else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from flask import Flask, abort

from Api_Loader import create_api_app
from tests.conftest import ROOT
from tests.test_api import error_of
from Utilities.data_loading import DataError
from Utilities.input_errors import InputError
from web.errors import is_json_path
from web.json_io import ApiError

HOME_LINK = '<a href="/" id="error-home">Back to the home page</a>'


def styled(response, status: int) -> str:
    """The page of a response that must be the styled error page with ``status``."""
    assert response.status_code == status, (response.status_code, response.get_data(True))
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert f'id="error-page" data-status="{status}"' in page, page
    assert 'class="topbar"' in page and "css/errors.css" in page  # the app's own layout
    assert HOME_LINK in page
    assert "Traceback" not in page and "werkzeug" not in page.lower()
    return page


def message_of(page: str) -> str:
    found = re.search(r'<p id="error-message"><b>(.*?)</b></p>', page, re.S)
    assert found, page
    return found.group(1)


@pytest.fixture()
def crashing(app: Flask) -> Flask:
    """The dashboard with routes that fail, served as in production (Flask re-raises in
    TESTING; waitress never does)."""

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail of the failure")

    @app.get("/api/boom")
    def api_boom() -> str:
        raise RuntimeError("secret detail of the failure")

    @app.get("/refused")
    def refused() -> str:
        raise InputError("start must be before end", "start")

    @app.get("/api/refused")
    def api_refused() -> str:
        raise ApiError(409, "a run with this name is running", "name")

    @app.get("/api/bad-data")
    def api_bad_data() -> str:
        raise DataError("has NaN", source="window", column="Close", rows=[3, 4],
                        field="window[2].Close")

    @app.get("/forbidden")
    def forbidden() -> str:
        abort(403, description="not for you")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


# ------------------------------------------------------------------ pages: styled


def test_an_unknown_page_is_the_styled_404(client) -> None:
    page = styled(client.get("/no/such/page"), 404)
    assert "<title>Page not found · Galaxy Models</title>" in page
    assert "There is no page at /no/such/page." in message_of(page)


@pytest.mark.parametrize("path", ["/backtest/not-a-result", "/backtest/not-a-result/trades.csv",
                                  "/backtests/anything"])
def test_an_unknown_backtest_is_the_styled_404(client, path: str) -> None:
    # The page names what was asked for: the route's own message names the id.
    assert path.split("/")[2] in message_of(styled(client.get(path), 404))


def test_a_path_is_escaped_on_the_page(client) -> None:
    page = styled(client.get("/<script>alert(1)</script>"), 404)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_a_wrong_method_on_a_page_is_the_styled_405(client) -> None:
    page = styled(client.post("/"), 405)
    assert message_of(page) == "/ does not accept a POST request."


def test_a_body_over_the_limit_on_a_page_is_the_styled_413(app, client) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 100_000
    page = styled(client.post("/hosting", data={"model": "x" * 200_000}), 413)
    assert "<title>Upload too large · Galaxy Models</title>" in page
    assert "larger than the 98 KiB limit" in message_of(page)


def test_an_uncaught_exception_is_the_styled_500_without_its_details(crashing, caplog) -> None:
    page = styled(crashing.test_client().get("/boom"), 500)
    assert "secret detail" not in page and "RuntimeError" not in page
    assert "The server hit an unexpected error while answering /boom." in message_of(page)
    assert "secret detail of the failure" in caplog.text  # the log has it all


def test_other_http_errors_are_styled_with_their_description(crashing) -> None:
    assert message_of(styled(crashing.test_client().get("/forbidden"), 403)) == "not for you"


def test_an_input_error_a_page_did_not_handle_is_a_styled_422(crashing) -> None:
    page = styled(crashing.test_client().get("/refused"), 422)
    assert message_of(page) == "start must be before end"


# --------------------------------------------------------------- programs: JSON


def test_api_paths_get_the_json_body(crashing) -> None:
    client = crashing.test_client()
    assert error_of(client.get("/api/nope"), 404)["error"] == "no such endpoint: /api/nope"
    assert error_of(client.get("/predict"), 405)["error"] == \
        "method GET is not allowed on /predict"
    crash = error_of(client.get("/api/boom"), 500)
    assert crash == {"error": "internal error (RuntimeError); see the server log"}
    assert error_of(client.get("/api/refused"), 409) == {
        "error": "a run with this name is running", "field": "name"}
    assert error_of(client.get("/api/bad-data"), 422) == {
        "error": "window: has NaN", "field": "window[2].Close", "column": "Close",
        "rows": ["3", "4"]}


def test_a_run_pages_program_routes_are_json() -> None:
    assert is_json_path("/runs/abc/live.json") and is_json_path("/runs/abc/control")
    assert not is_json_path("/runs/abc") and not is_json_path("/backtest/abc")


def test_the_model_server_answers_every_path_in_json() -> None:
    client = create_api_app(None, {"TESTING": True}).test_client()
    assert error_of(client.get("/hosting"), 404)["error"] == "no such endpoint: /hosting"
    assert error_of(client.get("/"), 404)
    error = error_of(client.post("/predict", json={"window": [[1.0]]}), 503)["error"]
    assert error == "no model is loaded: start the server with --model-dir"


# ------------------------------------------------------------------ where code lives


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", [ROOT / "Main.py", *sorted((ROOT / "web").glob("*.py"))],
                         ids=lambda p: p.name)
def test_nothing_imports_the_entry_file(path: Path) -> None:
    assert "Api_Loader" not in imported_modules(path)


def test_predict_is_found_by_grepping_web() -> None:
    routes = [p.name for p in (ROOT / "web").glob("*.py")
              if '.post("/predict")' in p.read_text(encoding="utf-8")]
    assert routes == ["predict.py"]
