"""The ``call-api`` command line: limits show/set/reset, one-line errors, --version, help."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest

from call_api.cli import main
from tests.auth_server.test_cli import assert_options_state_their_defaults
from tests.call_api.helpers import NUMBER, OTHER_NUMBER, start
from tests.conftest import bearer


@pytest.fixture
def cli(call_app, monkeypatch):
    # FlaskGroup sets FLASK_RUN_FROM_CLI in os.environ; undo it after the test.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    runner = call_app.test_cli_runner()

    def invoke(*args: str):
        return runner.invoke(main, list(args))

    return invoke


def _refused(api, token: str) -> bool:
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(token))
    assert r.status_code in (201, 409), r.get_data(as_text=True)
    return r.status_code == 409


def test_limits_show_of_a_subject_without_calls(cli):
    """show of an unknown subject: the default limit, nothing ongoing."""
    result = cli("limits", "show", "someone")
    assert result.exit_code == 0, result.output
    assert result.output == (
        '{"subject": "someone", "max_ongoing": 2, "limit_source": "default", "ongoing": 0}\n'
    )


def test_limits_reset_goes_back_to_the_default(cli, api, call_app, user_token, user):
    """reset: the user's own limit is dropped and CALL_MAX_ONGOING_DEFAULT applies again,
    at once, over HTTP."""
    result = cli("limits", "set", user.id, "1")
    assert (result.exit_code, result.output) == (
        0,
        json.dumps({"subject": user.id, "max_ongoing": 1}) + "\n",
    )
    start(api, user_token, OTHER_NUMBER)
    assert _refused(api, user_token)

    result = cli("limits", "reset", user.id)
    assert result.exit_code == 0, result.output
    assert result.output == (
        json.dumps({"subject": user.id, "max_ongoing": 2, "limit_source": "default", "ongoing": 1})
        + "\n"
    )
    assert not _refused(api, user_token)  # the second call (default 2) is let in
    assert _refused(api, user_token)

    # The default follows the setting, it is not copied into the user's row.
    call_app.config["CALL_MAX_ONGOING_DEFAULT"] = 3
    assert json.loads(cli("limits", "show", user.id).output)["max_ongoing"] == 3


def test_limits_reset_of_a_subject_without_a_limit(cli):
    """reset when nothing was set: the default, and no error."""
    result = cli("limits", "reset", "someone")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "subject": "someone",
        "max_ongoing": 2,
        "limit_source": "default",
        "ongoing": 0,
    }


@pytest.mark.parametrize("bad", ["-1", "-10", "10001", "x", "1.5", "", "9" * 5000])
def test_limits_set_bad_value_is_one_line(cli, bad):
    """A negative, too large or non-integer N: one line naming N and its range, exit 2,
    and the limit is unchanged (a negative N is not read as an unknown option)."""
    result = cli("limits", "set", "someone", bad)
    assert (result.exit_code, result.output) == (
        2,
        f"Error: Invalid value for 'N': N must be an integer between 0 and 10000, got {bad!r}.\n",
    )
    assert json.loads(cli("limits", "show", "someone").output)["limit_source"] == "default"


def test_limits_set_accepts_the_bounds(cli):
    """0 and 10000 are the bounds, both allowed."""
    for n in ("0", "10000"):
        result = cli("limits", "set", "someone", n)
        assert (result.exit_code, result.output) == (
            0,
            json.dumps({"subject": "someone", "max_ongoing": int(n)}) + "\n",
        )


def test_version_is_clickcalls(cli):
    """--version prints ClickCall's version (package metadata), not Flask's."""
    result = cli("--version")
    assert (result.exit_code, result.output) == (
        0,
        f"call-api (ClickCall) {version('clickcall')}\n",
    )


def test_every_option_states_its_default():
    """Every option of every call-api command has help that states its default."""
    assert_options_state_their_defaults(main, minimum=3)
