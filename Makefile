# The two set-up commands of the README:
#   make run   install everything and open napari on the bundled sample case
#   make test  install what the tests need (Xvfb, Mesa, fonts) and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLE := sample_data/ct-phantom
XVFB   := xvfb-run -a -s "-screen 0 1280x1024x24"
# the dev venv has PyQt6 and PyQt5 (for the second widget-test run); qtpy would pick PyQt5
export QT_API ?= pyqt6
export PYTEST_QT_API ?= $(QT_API)

.PHONY: run test sample screenshot bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

$(SAMPLE)/dataset.json: | $(VENV)/.installed
	$(BIN)/napari-grounding sample sample_data

sample: $(SAMPLE)/dataset.json

run: $(VENV)/.installed sample
	$(BIN)/napari-grounding view $(SAMPLE) --item finding/0

# the whole suite under PyQt6, then the widget tests again under PyQt5
test: $(VENV)/.installed
	bash scripts/install-system-deps.sh
	$(XVFB) $(BIN)/python -m pytest $(PYTEST_ARGS)
	QT_API=pyqt5 PYTEST_QT_API=pyqt5 $(XVFB) $(BIN)/python -m pytest -m gui $(PYTEST_ARGS)

screenshot: $(VENV)/.installed
	bash scripts/install-system-deps.sh
	$(XVFB) $(BIN)/python scripts/screenshot.py docs

clean:
	rm -rf $(VENV) $(SAMPLE) .pytest_cache

# readers, cache and CSV outside the viewer; then the viewer itself under Xvfb (a wider screen:
# every run's canvas is fixed at 900 x 900 px beside the panel), data kept in .benchmarks/;
# then the dataset jobs through the command line (its data generated in a temporary folder)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py
	xvfb-run -a -s "-screen 0 1920x1200x24" $(BIN)/python benchmarks/viewer.py \
		--json benchmarks/results/viewer.json $(BENCH_ARGS)
	$(BIN)/python benchmarks/jobs.py $(JOBS_ARGS)
