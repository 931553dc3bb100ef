# Set-up and everyday commands. Each target creates or reuses .venv and
# installs the project into it; the broker targets start Apache Kafka from
# Maven Central jars unless KAFKA_BOOTSTRAP_SERVERS names a cluster.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The peer benchmark's own environment: Quix Streams pins its own confluent-kafka.
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed
QUIXSTREAMS := quixstreams==3.28.1

.PHONY: demo test test-unit lint docs venv broker-start broker-stop broker-status registry-start registry-stop clean drift-report bench-drift-cost bench-state bench bench-peer chaos lifecycle mlflow-extra

demo: $(STAMP)  ## the main job on a local broker, with a summary
	VENV_BIN=$(BIN) scripts/demo

test: $(STAMP)  ## every test; integration tests on a real broker, Schema Registry and Prometheus
	scripts/ensure-prometheus
	scripts/local-kafka with scripts/local-registry with $(BIN)/python -m pytest

test-unit: $(STAMP)  ## pure-logic tests, no broker
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)  ## static checks: ruff (see pyproject.toml for the rules) and mypy on stream, features, models
	$(BIN)/ruff check stream features models schemas tests bench
	$(BIN)/mypy
	$(BIN)/python -m stream.tools.docs --check

docs: $(STAMP)  ## regenerate docs/configuration.md and docs/metrics.md from the code
	$(BIN)/python -m stream.tools.docs

bench: $(STAMP)  ## throughput and latency against a per-event loop and a consume+decode ceiling
	scripts/local-kafka with $(BIN)/python bench/throughput.py

drift-report: $(STAMP)  ## detection delay and false alarms per detector: bench/results/drift.json + drift.png
	$(BIN)/python bench/drift_report.py

bench-drift-cost: $(STAMP)  ## throughput with default drift monitoring vs without, as a ratio
	scripts/local-kafka with $(BIN)/python bench/drift_cost.py

chaos: $(STAMP)  ## scorer kills, broker restarts, workers joining and dying: bench/results/chaos.json
	scripts/local-kafka with $(BIN)/python bench/chaos.py

bench-state: $(STAMP)  ## state: restore time and memory for 1,000,000 keys, throughput with vs without, 10 M keys churning
	scripts/local-kafka with $(BIN)/python bench/state_cost.py
	$(BIN)/python bench/state_churn.py

bench-peer: $(STAMP) $(PEER_STAMP)  ## the same backlog through streamscore and a Quix Streams application: bench/results/peer.json
	scripts/local-kafka with $(BIN)/python bench/peer.py --peer-python $(PEER_VENV)/bin/python

$(PEER_STAMP): pyproject.toml
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -e . '$(QUIXSTREAMS)'
	touch $(PEER_STAMP)

lifecycle: $(STAMP)  ## drift, alarm, retrain, shadow, compare, promote on a live stream: bench/results/lifecycle.json + .png
	scripts/local-kafka with $(BIN)/python bench/lifecycle.py

venv: $(STAMP)

mlflow-extra: $(STAMP)  ## the optional MLflow registry backend (~850 MB): its integration test runs once it is installed
	$(BIN)/python -m pip install --quiet -e '.[mlflow]'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot]'
	touch $(STAMP)

broker-start: $(STAMP)
	scripts/local-kafka start

broker-stop:
	scripts/local-kafka stop

broker-status:
	scripts/local-kafka status

registry-start:
	scripts/local-registry start

registry-stop:
	scripts/local-registry stop

clean:
	scripts/local-kafka clean
	rm -rf $(VENV) .pytest_cache *.egg-info
