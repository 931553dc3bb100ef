"""What differs between the workers of `streamscore run --workers N`."""

from __future__ import annotations

from pathlib import Path

from stream.config import load_config
from stream.runtime.workers import worker_environ

SENSOR = Path(__file__).resolve().parents[2] / "examples" / "sensor.toml"


def test_each_worker_gets_its_own_port_transactional_id_and_instance_id() -> None:
    environ = {"STREAMSCORE_PROCESSING__GUARANTEE": "exactly_once", "STREAMSCORE_METRICS__PORT": "9400",
               "STREAMSCORE_PROCESSING__TRANSACTIONAL_ID": "scorer",
               "STREAMSCORE_KAFKA__CONSUMER__GROUP_INSTANCE_ID": "host-a"}
    config = load_config(SENSOR, environ)
    envs = [worker_environ(environ, config, i) for i in range(3)]
    configs = [load_config(SENSOR, env) for env in envs]
    assert [c.metrics.port for c in configs] == [9400, 9401, 9402]
    assert [c.transactional_id for c in configs] == ["scorer-0", "scorer-1", "scorer-2"]
    assert [c.kafka.consumer["group.instance.id"] for c in configs] == ["host-a-0", "host-a-1", "host-a-2"]
    assert len({c.kafka.group_id for c in configs}) == 1


def test_at_least_once_workers_on_any_free_port_share_everything_else() -> None:
    environ = {"STREAMSCORE_METRICS__PORT": "0"}
    config = load_config(SENSOR, environ)
    assert [worker_environ(environ, config, i) for i in range(2)] == [environ, environ]
