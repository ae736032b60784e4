# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test crds lint clean

demo: $(VENV)/.installed
	$(BIN)/braid demo

# The Kubernetes binaries are built once per machine (cached under ~/.cache/braid);
# building them before pytest keeps a cold machine's build out of any test's timeout.
test: $(VENV)/.installed
	hack/build-k8s.sh etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet >/dev/null
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

crds: $(VENV)/.installed
	$(BIN)/braid crds --out crds

lint: $(VENV)/.installed
	$(BIN)/lint-imports

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
