# Developer tasks. `just` lists them.

set shell := ["bash", "-uc"]

venv := ".venv/bin/"

default:
    @just --list

# install with dev tools into .venv
setup:
    python3 -m venv .venv && {{venv}}pip install -q -e '.[dev]'

# NATS and every service with the simulated fleet
up *ARGS:
    {{venv}}fleet up {{ARGS}}

# the default test suite (what CI runs)
test *ARGS:
    {{venv}}python -m pytest {{ARGS}}

# slow soak/chaos tests
test-slow *ARGS:
    {{venv}}python -m pytest -m slow {{ARGS}}

# one of the suites kept apart from the default run: chaos, fuzz, attack or cluster (`.ci/suites` runs them all)
suite NAME *ARGS:
    {{venv}}python -m pytest -m "slow and {{NAME}}" {{ARGS}}

# mutation testing of the pure decision modules (kill rates per module, surviving mutants);
# its own CI step, not part of `just test`. Words pick modules: `just mutate judge`
mutate *MODULES:
    {{venv}}python .ci/mutate {{MODULES}}

# branch coverage of services/ and contracts/ as a report (terminal and build/coverage/)
coverage *ARGS:
    {{venv}}python -m pytest --cov=services --cov=contracts --cov-branch --cov-report=term:skip-covered --cov-report=html:build/coverage {{ARGS}}

# ruff (lint and format check), mypy over contracts/ services/ tools/ (strict on contracts/, services/kit/, services/a2a/), import layers (as CI)
lint:
    .ci/lint

# benchmarks with same-run baselines
bench *ARGS:
    {{venv}}fleet bench {{ARGS}}

# the scaler against HPA/KPA baselines on the shared traces
replay TRACE *ARGS:
    {{venv}}fleet replay {{TRACE}} --policy ours hpa kpa --lead-time 120 {{ARGS}}

# validate deployment files: compose config, promtool rules tests
deploy-check:
    docker compose -f deploy/compose.yaml config -q
    promtool check rules deploy/prometheus/alerts.yml
    promtool test rules deploy/prometheus/alerts_test.yml
