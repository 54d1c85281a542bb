"""The alerts table on both engines: what AlertSystem records, the page's filters, the
unread count, acknowledgement, delivery outcomes, and deletion with the run."""

from __future__ import annotations

import pytest

from Utilities import alert_records
from Utilities.alert_system import AlertSystem
from Utilities.run_store import RunNotFound, RunStore


class Refusing:
    name = "webhook"

    def send(self, alert) -> None:
        from Utilities.alert_channels import DeliveryError

        raise DeliveryError("answered HTTP 500")

    def describe(self) -> dict:
        return {"channel": self.name}


def test_alerts_are_recorded_listed_and_acknowledged(any_store: RunStore) -> None:
    run_id = any_store.create_run(name="a", model_type="ppo")
    with AlertSystem({"throttle_seconds": 0}, store=any_store, run_id=run_id) as alerts:
        alerts.send_alert("warning", "Slow", "no improvement", rule="no_improvement")
        alerts.send_alert("critical", "NaN", "loss is NaN", {"keys": ["loss"]},
                          rule="non_finite")
    with AlertSystem({}, store=any_store) as script:  # a script's alert has no run
        script.send_alert("info", "Hello", "from a script")
    page, total = alert_records.list_alerts(any_store)
    assert total == 3 and [a["title"] for a in page] == ["Hello", "NaN", "Slow"]
    assert page[0]["run_id"] is None and page[1]["data"] == {"keys": ["loss"]}
    assert page[1]["seq"] == next(e["seq"] for e in any_store.events_after(0, run_id=run_id)
                              if e["kind"] == "alert" and e["payload"]["title"] == "NaN")
    assert [a["title"] for a in alert_records.list_alerts(any_store, run_id=run_id,
                                                          level="critical")[0]] == ["NaN"]
    assert alert_records.list_alerts(any_store, rule="no_improvement")[1] == 1
    assert alert_records.unread_count(any_store) == 3
    assert alert_records.acknowledge(any_store, [page[1]["alert_id"]]) == 1
    assert alert_records.unread_count(any_store) == 2
    assert alert_records.list_alerts(any_store, acked=True)[0][0]["acked"]
    assert alert_records.acknowledge(any_store) == 2
    assert alert_records.unread_count(any_store) == 0
    with pytest.raises(ValueError, match="level"):
        alert_records.list_alerts(any_store, level="fatal")


def test_failed_deliveries_show_on_the_alert(any_store: RunStore) -> None:
    run_id = any_store.create_run(name="a", model_type="ppo")
    alerts = AlertSystem({"delivery": {"retries": 0}}, store=any_store, run_id=run_id)
    alerts.settings = alerts.settings.__class__(**{**vars(alerts.settings),
                                                   "channels": (Refusing(),)})
    alerts.send_alert("critical", "NaN", "x")
    alerts.close()
    (alert,), _ = alert_records.list_alerts(any_store)
    assert alert["delivery_failed"]
    assert [(d["channel"], d["ok"], d["error"]) for d in alert["deliveries"]] == [
        ("webhook", False, "answered HTTP 500")]


def test_deleting_a_run_deletes_its_alerts(any_store: RunStore) -> None:
    run_id = any_store.create_run(name="a", model_type="ppo")
    kept = any_store.create_run(name="b", model_type="ppo")
    for rid in (run_id, kept):
        with AlertSystem({}, store=any_store, run_id=rid) as alerts:
            alerts.send_alert("info", "x", "y")
    any_store.set_status(run_id, "completed")
    any_store.delete_run(run_id)
    assert [a["run_id"] for a in alert_records.list_alerts(any_store)[0]] == [kept]


def test_an_alert_for_an_unknown_run_is_not_recorded(any_store: RunStore) -> None:
    with pytest.raises(RunNotFound):
        any_store.record_alert({"id": "a" * 32, "level": "info", "title": "t",
                                "run_id": "00000000-0000-0000-0000-000000000000",
                                "created": 1.0})
    assert alert_records.list_alerts(any_store)[1] == 0
