# Two commands for users: `make demo` and `make test`. Everything else is a helper.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: install demo test test-slow test-numpy2 test-reference bench clean

install: $(STAMP)

# torch==2.13.0 goes in first and constraints.txt keeps every later requirement on it,
# so pip never replaces it with a multi-gigabyte CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	touch $(STAMP)

demo: install
	$(BIN)/hma demo

test: install
	$(BIN)/python -m pytest -q

# The slow tests start real processes and kill them at a moment of visible progress; one
# rerun keeps a rare timing race from failing CI (a real defect fails both attempts), and
# `-rR` lists any test that needed it.
test-slow: install
	$(BIN)/python -m pytest -q -m slow --reruns 1 -rR

# Speed figures, printed side by side; run them on an otherwise idle machine.
bench: install
	$(BIN)/python benchmarks/bench_windows.py
	$(BIN)/python benchmarks/bench_tokenizer.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/hma bench --presets tiny base

# The default suite on NumPy 2, in a venv of its own: robosuite 1.5.2 pins mink==0.0.5, which
# declares numpy<2, so those two go in without their dependency pins; everything else resolves.
NP2 := .venv-numpy2
REF := .venv-reference
test-numpy2:
	test -x $(NP2)/bin/python || $(PY) -m venv $(NP2)
	$(NP2)/bin/python -m pip install -q --upgrade pip
	$(NP2)/bin/python -m pip install -q torch==2.13.0
	$(NP2)/bin/python -m pip install -q -c constraints.txt -e ".[dev]" "numpy>=2" \
		mujoco==3.3.0 "gymnasium[mujoco]==1.4.0" metaworld==3.1.1 gym-pusht==0.1.8 \
		numba qpsolvers quadprog pynput termcolor
	$(NP2)/bin/python -m pip install -q --no-deps robosuite==1.5.2 mink==0.0.5
	$(NP2)/bin/python -c "import numpy; assert int(numpy.__version__.split('.')[0]) >= 2, numpy.__version__"
	$(NP2)/bin/python -m pytest -q

# hma's LPIPS and FID-Inception against the lpips and pytorch-fid packages themselves
# (tests/test_eval_nets_reference.py). Both need torchvision, which cannot sit beside
# torch 2.13.0, so they get their own environment: torch 2.14.1 with torchvision 0.29.1
# (pip takes both from this machine's disk; about 6 GB).
test-reference:
	test -x $(REF)/bin/python || $(PY) -m venv $(REF)
	$(REF)/bin/python -m pip install -q --upgrade pip
	$(REF)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(REF)/bin/python -m pip install -q lpips==0.1.4 pytorch-fid==0.3.0 -e ".[dev]"
	$(REF)/bin/python -c "import torchvision, lpips, pytorch_fid"
	$(REF)/bin/python -m pytest -q -rs tests/test_eval_nets_reference.py

clean:
	rm -rf $(VENV) $(NP2) $(REF) demo_out .pytest_cache
