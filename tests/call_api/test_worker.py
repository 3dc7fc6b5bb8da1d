"""The webhook worker: the backoff schedule and giving up, leases (two workers at once on
PostgreSQL never send one event together; a lapsed lease lets another worker take over, and
the slow one cannot overwrite), stopping, and the settings' checks."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from call_api import webhooks
from call_api.config import _check_webhook_settings, finalise, load_config
from call_api.models import CallEvent, DeliveryAttempt
from call_api.webhooks import backoff_delay
from call_api.worker import Worker
from shared.config import ConfigError
from tests.call_api import test_webhooks as wh
from tests.call_api.helpers import good_claims
from tests.call_api.test_webhooks import events, hang_up, register, run_worker, start_call

# The webhook tests' fixtures (a real receiver, an admin token, app tokens), used here too.
admin = wh.admin
app_token = wh.app_token
receiver = wh.receiver
make_receiver = wh.make_receiver


def parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_backoff_delay_doubles_up_to_the_cap_with_equal_jitter():
    low = [backoff_delay(n, 5, 3600, rand=lambda: 0.0) for n in range(1, 12)]
    high = [backoff_delay(n, 5, 3600, rand=lambda: 1.0) for n in range(1, 12)]
    assert high == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert low == [h / 2 for h in high]
    assert backoff_delay(10_000, 5, 3600, rand=lambda: 1.0) == 3600  # no overflow
    assert 2.5 <= backoff_delay(1, 5, 3600) <= 5


def closed_port() -> int:
    """A port nothing listens on (connecting is refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_backoff_schedule_then_give_up(make_call_app, admin, app_token):
    """Attempts at the times the schedule says (base 1 s, cap 4 s, jitter at its top), the
    last one exactly when the 10 s retry window ends, then failed. The clock is passed in,
    so nothing waits."""
    app = make_call_app(
        CALL_WEBHOOK_BACKOFF_BASE=1,
        CALL_WEBHOOK_BACKOFF_MAX=4,
        CALL_WEBHOOK_RETRY_FOR=10,
        CALL_WEBHOOK_TIMEOUT=2,
        CALL_WEBHOOK_LEASE_SECONDS=10,
    )
    api = app.test_client()
    register(api, admin, f"http://127.0.0.1:{closed_port()}/gone")
    call = start_call(api, app_token())
    [event] = events(api, admin, call)
    settings = webhooks.Settings.from_config(app.config)
    db = app.extensions["sqlalchemy"]
    expected_offsets = [1, 3, 7, 10]  # +1, +2, +4, then clamped to the window's end
    with app.app_context():
        row = db.session.scalar(select(CallEvent).where(CallEvent.event_id == event["event_id"]))
        created = row.created_at
        assert (row.next_attempt_at, row.retry_until) == (created, created + timedelta(seconds=10))
        db.session.commit()
        t = created
        for offset in [*expected_offsets, None]:
            assert webhooks.claim("w", settings, now=t - timedelta(microseconds=1)) == []
            [item] = webhooks.claim("w", settings, now=t)
            outcome = webhooks.deliver(item, app.config, settings, clock=lambda: t)  # noqa: B023
            assert outcome.status_code is None
            assert outcome.error is not None and outcome.error.startswith("could not connect:")
            assert webhooks.record(item, outcome, "w", settings, now=t, rand=lambda: 1.0)
            db.session.refresh(row)
            if offset is None:
                break
            assert (row.delivery, row.next_attempt_at) == (
                "pending",
                created + timedelta(seconds=offset),
            )
            t = row.next_attempt_at
            db.session.commit()
        attempted = db.session.scalars(
            select(DeliveryAttempt.attempted_at).where(DeliveryAttempt.event_id == row.id)
        ).all()
        assert [a - created for a in attempted] == [timedelta(seconds=s) for s in (0, 1, 3, 7, 10)]
        db.session.commit()
        assert webhooks.claim("w", settings, now=t + timedelta(days=1)) == []
        db.session.remove()
    [event] = events(api, admin, call)
    assert (event["delivery"], event["attempts"], event["next_attempt_at"]) == ("failed", 5, None)
    assert event["last_error"] == "could not connect: [Errno 111] Connection refused"
    assert len(event["attempt_log"]) == 5


def test_a_failed_event_lets_the_next_event_of_its_call_go(make_call_app, admin, app_token):
    """Order per call waits for a pending event, not for one that was given up on."""
    app = make_call_app()
    api = app.test_client()
    port = closed_port()
    register(api, admin, f"http://127.0.0.1:{port}/gone")
    token = app_token()
    call = hang_up(api, token, start_call(api, token))
    settings = webhooks.Settings.from_config(app.config)
    with app.app_context():
        [first] = webhooks.claim("w", settings)
        outcome = webhooks.deliver(first, app.config, settings)
        later = datetime.now(UTC) + timedelta(days=2)  # past the 24 h retry window
        assert webhooks.record(first, outcome, "w", settings, now=later)
        [second] = webhooks.claim("w", settings)
    assert [e["delivery"] for e in events(api, admin, call)] == ["failed", "pending"]
    assert (first.event_id, second.event_id) == tuple(
        e["event_id"] for e in events(api, admin, call)
    )


def test_a_lapsed_lease_passes_the_event_on(call_app, api, admin, app_token, receiver):
    """Worker A claims and stalls: worker B does not take the event while A's lease runs,
    takes it once the lease lapsed, and A's late result cannot overwrite B's."""
    register(api, admin, receiver.url())
    call = start_call(api, app_token())
    settings = webhooks.Settings.from_config(call_app.config)
    with call_app.app_context():
        [stalled] = webhooks.claim("worker-a", settings)
    assert run_worker(call_app, "worker-b") == 0
    assert receiver.requests == []
    db = call_app.extensions["sqlalchemy"]
    with call_app.app_context():  # the lease runs out (as if 60 s went by)
        db.session.execute(
            update(CallEvent)
            .where(CallEvent.event_id == stalled.event_id)
            .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()
    assert run_worker(call_app, "worker-b") == 1
    assert receiver.ids() == [stalled.event_id]
    with call_app.app_context():
        late = webhooks.Outcome(datetime.now(UTC), 500, "HTTP 500", 5)
        assert webhooks.record(stalled, late, "worker-a", settings) is False
        db.session.remove()
    [event] = events(api, admin, call)
    assert (event["delivery"], event["attempts"], event["last_status"]) == ("delivered", 1, 204)
    assert [(a["worker"], a["status_code"]) for a in event["attempt_log"]] == [
        ("worker-b", 204),
        ("worker-a", 500),  # the stalled attempt is logged: it did happen
    ]


@pytest.mark.parametrize("databases", ["postgresql"], indirect=True)
def test_two_workers_never_send_one_event_at_the_same_time(
    databases, make_call_app, admin, forge, make_receiver
):
    """Two workers (own apps, own connection pools, own threads) drain 40 events of 20
    calls in small batches against a slow receiver: every event arrives exactly once, and
    each call's events in order."""
    settings = dict(
        CALL_WEBHOOK_BATCH=3,
        CALL_WEBHOOK_TIMEOUT=2,
        CALL_WEBHOOK_LEASE_SECONDS=10,
        CALL_MAX_ONGOING_DEFAULT=100,
    )
    first, second = make_call_app(**settings), make_call_app(**settings)
    receiver = make_receiver(delay=0.01)
    api = first.test_client()
    register(api, admin, receiver.url())
    for _ in range(20):
        token = forge(good_claims(client_id="app-1"))
        hang_up(api, token, start_call(api, token))
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(app: Flask, name: str) -> None:
        try:
            with app.app_context():
                worker = Worker(app, name)
                barrier.wait()
                worker.run_once()
                worker.close()
                app.extensions["sqlalchemy"].session.remove()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(app, name))
        for app, name in ((first, "worker-1"), (second, "worker-2"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    counts = Counter(receiver.ids())
    assert len(counts) == 40
    assert set(counts.values()) == {1}
    by_call: dict[str, list[str]] = {}
    for r in receiver.requests:
        by_call.setdefault(r.event["data"]["token_call"], []).append(r.event["type"])
    assert set(map(tuple, by_call.values())) == {("call.queued", "call.canceled")}


def test_run_stops_when_asked(make_call_app, admin, app_token, receiver):
    """``Worker.run`` polls until ``stop`` is set (SIGTERM/SIGINT set it), finishing what
    it has in hand."""
    call_app = make_call_app(CALL_WEBHOOK_POLL_INTERVAL=0.05)
    api = call_app.test_client()
    register(api, admin, receiver.url())
    worker = Worker(call_app, "looper")
    done = threading.Event()

    def loop() -> None:
        with call_app.app_context():
            worker.run()
            call_app.extensions["sqlalchemy"].session.remove()
        done.set()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        start_call(api, app_token())
        deadline = time.monotonic() + 5
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.requests) == 1
    finally:
        worker.stop.set()
        thread.join(timeout=5)
        worker.close()
    assert done.is_set()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"CALL_WEBHOOK_TIMEOUT": "0"}, "CALL_WEBHOOK_TIMEOUT must be positive"),
        ({"CALL_WEBHOOK_TIMEOUT": "fast"}, "CALL_WEBHOOK_TIMEOUT must be a number, got 'fast'"),
        (
            {"CALL_WEBHOOK_POLL_INTERVAL": "nan"},
            "CALL_WEBHOOK_POLL_INTERVAL must be a finite number, got 'nan'",
        ),
        (
            {"CALL_WEBHOOK_BACKOFF_BASE": "10", "CALL_WEBHOOK_BACKOFF_MAX": "5"},
            "CALL_WEBHOOK_BACKOFF_MAX must be at least CALL_WEBHOOK_BACKOFF_BASE",
        ),
        (
            {"CALL_WEBHOOK_LEASE_SECONDS": "10"},
            "CALL_WEBHOOK_LEASE_SECONDS must be more than twice CALL_WEBHOOK_TIMEOUT "
            "(a delivery must end before its lease does)",
        ),
        ({"CALL_WEBHOOK_BATCH": "0"}, "CALL_WEBHOOK_BATCH must be from 1 to 200"),
        (
            {"CALL_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8 bogus"},
            "CALL_WEBHOOK_ALLOWED_NETWORKS has 'bogus', which is not a network (CIDR such as "
            "10.0.0.0/8 or an address)",
        ),
    ],
)
def test_settings_are_checked(env: dict[str, str], message: str):
    with pytest.raises(ConfigError) as info:
        finalise(load_config(env))
    assert str(info.value) == message


def test_settings_defaults_and_floats():
    config = load_config({"CALL_WEBHOOK_POLL_INTERVAL": "0.25", "CALL_WEBHOOK_TIMEOUT": "1.5"})
    finalise(config)
    assert {k: v for k, v in config.items() if k.startswith("CALL_WEBHOOK_")} == {
        "CALL_WEBHOOK_RETRY_FOR": 86_400,
        "CALL_WEBHOOK_TIMEOUT": 1.5,
        "CALL_WEBHOOK_LEASE_SECONDS": 60,
        "CALL_WEBHOOK_BACKOFF_BASE": 5,
        "CALL_WEBHOOK_BACKOFF_MAX": 3600,
        "CALL_WEBHOOK_POLL_INTERVAL": 0.25,
        "CALL_WEBHOOK_BATCH": 20,
        "CALL_WEBHOOK_ALLOWED_NETWORKS": [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ],
    }
    production = load_config({"APP_ENV": "production"})  # finalise would refuse its SQLite
    _check_webhook_settings(production)
    assert production["CALL_WEBHOOK_ALLOWED_NETWORKS"] == []
    listed = load_config({"CALL_WEBHOOK_ALLOWED_NETWORKS": "none"})
    finalise(listed)
    assert listed["CALL_WEBHOOK_ALLOWED_NETWORKS"] == []


def test_a_broken_event_is_its_own_failed_attempt():
    """Whatever goes wrong with one event (here a corrupted secret) is that event's outcome:
    ``deliver`` never raises, so the worker's rounds go on for the others."""
    item = webhooks.Claim(
        id=1,
        event_id="msg_x",
        url="http://127.0.0.1:9/",
        payload="{}",
        client_id="app-1",
        attempts=0,
        retry_until=datetime.now(UTC),
        secret="whsec_",
        lease="w#1",
    )
    settings = webhooks.Settings(2, 10, 1, 2, 1, 0.1)
    outcome = webhooks.deliver(item, {"APP_ENV": "development"}, settings)
    assert (outcome.status_code, outcome.error, outcome.delivered) == (
        None,
        "internal error: EmptyWebhookSecretError: webhook secret may not be empty",
        False,
    )
