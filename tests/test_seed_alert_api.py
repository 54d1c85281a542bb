"""The seed's AlertSystem snippets (../shared/seeds/metrics_alerts_experiments.md) run as
written. Each is copied verbatim below and executed with the seed's package name
(``nexlify.monitoring.alert_system``) aliased to ours; names a snippet uses without
defining them (``latest``, ``recent_episodes``, ``episode``) are defined around it.
The seed's email and Slack settings point at smtp.gmail.com and a placeholder webhook:
their deliveries fail on the background thread (recorded, never raised), which is the
point of the API."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from Utilities import alert_system as ours

USAGE = '''
from nexlify.monitoring.alert_system import AlertSystem, AlertThresholds

config = {
    'enable_alerts': True,
    'email': {
        'enabled': True,
        'smtp_host': 'smtp.gmail.com',
        'smtp_port': 587,
        'username': 'your@email.com',
        'password': 'your_password',
        'to_addrs': ['recipient@email.com']
    },
    'slack': {
        'enabled': True,
        'webhook_url': 'https://hooks.slack.com/...'
    },
    'thresholds': AlertThresholds.MODERATE
}

alert_system = AlertSystem(config)

# Send alert
alert_system.send_alert(
    level='warning',
    title='Slow Learning',
    message='No improvement in 100 episodes'
)

# Check training health
alert_system.check_training_health(
    latest_episode=latest,
    recent_history=recent_episodes
)

# Training complete notification
alert_system.send_training_complete(
    total_episodes=1000,
    best_profit=5000.0,
    best_sharpe=2.5,
    training_time=3600.0
)
'''

CONFIG_FILE = '''
{
  "training_dashboard": {
    "enabled": true,
    "port": 8050,
    "update_interval_ms": 2000,
    "theme": "cyberpunk",
    "auto_start": false,

    "metrics_logging": {
      "enabled": true,
      "output_dir": "training_logs",
      "buffer_size": 100,
      "auto_save_interval": 50,
      "enable_async": true
    },

    "alerts": {
      "enabled": true,
      "email": {
        "enabled": false,
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
        "username": "your@email.com",
        "password": "your_password"
      },
      "slack": {
        "enabled": false,
        "webhook_url": "https://hooks.slack.com/..."
      },
      "thresholds": {
        "no_improvement_episodes": 100,
        "critical_loss_threshold": 1000.0,
        "min_profit_warning": -500.0
      }
    },

    "experiment_tracking": {
      "enabled": true,
      "experiments_dir": "experiments",
      "auto_save": true
    }
  }
}
'''

LOADING_CONFIG = '''
import json

with open('config/neural_config.json') as f:
    config = json.load(f)

dashboard_config = config['training_dashboard']
alert_config = dashboard_config['alerts']

# Use config
alert_system = AlertSystem(alert_config)
'''

CUSTOM_THRESHOLDS = '''
custom_thresholds = {
    'no_improvement_episodes': 75,
    'critical_loss_threshold': 750.0,
    'min_profit_warning': -300.0
}

alert_system = AlertSystem({
    'enable_alerts': True,
    'thresholds': custom_thresholds
})
'''

THROTTLING = '''
# Health checks every 10-20 episodes
if episode % 10 == 0:
    alert_system.check_training_health(latest, recent)

# Not every episode (alert spam)
# alert_system.check_training_health(...)  # NO!
'''


@pytest.fixture()
def names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    package = types.ModuleType("nexlify")
    monitoring = types.ModuleType("nexlify.monitoring")
    for name, module in {"nexlify": package, "nexlify.monitoring": monitoring,
                         "nexlify.monitoring.alert_system": ours}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.chdir(tmp_path)
    recent = [{"episode": i, "profit": float(i), "loss": 1.0} for i in range(1, 11)]
    return {"latest": {"episode": 11, "profit": float("nan"), "loss": 2.0},
             "recent_episodes": recent, "recent": recent}


def run(snippet: str, names: dict) -> dict:
    exec(compile(snippet, "<seed>", "exec"), names)
    for value in list(names.values()):
        if isinstance(value, ours.AlertSystem):
            value.close(0.1)  # placeholder hosts: do not wait for their retries
    return names


def test_the_usage_snippet(names: dict) -> None:
    done = run(USAGE, names)
    system = done["alert_system"]
    assert [channel.name for channel in system.settings.channels] == ["email", "slack"]
    assert system.thresholds.no_improvement_episodes == 100  # MODERATE
    titles = [alert.title for alert in system.alerts]
    assert titles[0] == "Slow Learning"
    assert "Non-finite metric" in titles  # the planted NaN profit in ``latest``
    assert titles[-1] == "Training complete"
    assert system.alerts[-1].data["best_profit"] == 5000.0


def test_loading_the_config_file(names: dict, tmp_path: Path) -> None:
    names["AlertSystem"] = ours.AlertSystem  # imported by the seed's earlier snippet
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "neural_config.json").write_text(CONFIG_FILE)
    done = run(LOADING_CONFIG, names)
    system = done["alert_system"]
    assert system.settings.enabled and system.settings.channels == ()  # both disabled
    assert system.thresholds.critical_loss_threshold == 1000.0


def test_custom_thresholds(names: dict) -> None:
    done = run("from nexlify.monitoring.alert_system import AlertSystem\n"
               + CUSTOM_THRESHOLDS, names)
    assert done["alert_system"].thresholds.no_improvement_episodes == 75


def test_the_throttling_advice(names: dict) -> None:
    system = ours.AlertSystem({"thresholds": {"no_improvement_episodes": 15}})
    names.update(alert_system=system, recent=[])
    for episode in range(60):  # the best at episode 3; checked every 10th episode
        names["episode"] = episode
        names["latest"] = {"episode": episode, "profit": 1.0 if episode == 3 else 0.0}
        run(THROTTLING, names)
        names["recent"] = [*names["recent"], names["latest"]][-100:]
    (alert,) = system.alerts
    assert alert.rule == "no_improvement" and alert.data["best_episode"] == 3
    assert alert.data["episodes_since_best"] == 17  # told at the check of episode 20
