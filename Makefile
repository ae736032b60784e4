# The two commands of the README: `make demo` and `make test`.
#
# Every Python dependency comes from uv.lock (exact versions and hashes), installed by
# the pinned uv of hack/requirements-uv.txt; see the README, "Installs".
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LATEST ?= .venv-latest
UV = $(shell hack/uv.sh)
# uv uses the machine's Python and never downloads one.
export UV_PYTHON_DOWNLOADS := never
K8S_BINARIES := etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet

.PHONY: demo test test-latest crds lint lock requirements clean

demo: $(VENV)/.installed
	hack/sandbox.sh
	$(BIN)/braid demo

# The Kubernetes binaries and the Gitea server of the pull request tests are built once per
# machine (cached under ~/.cache/braid); building them before pytest keeps a cold machine's
# build out of any test's timeout.
test: $(VENV)/.installed
	hack/sandbox.sh --require
	hack/build-k8s.sh $(K8S_BINARIES) >/dev/null
	hack/gitea.sh >/dev/null
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

# The same tests against the newest versions pyproject.toml allows, in a venv of its
# own: drift is found on purpose, and uv.lock is not touched (`make lock` moves it).
test-latest:
	rm -rf $(LATEST)
	$(UV) venv --quiet --python $(PYTHON) $(LATEST)
	$(UV) pip install --quiet --python $(LATEST)/bin/python --upgrade --no-cache -e '.[test,dev]'
	hack/sandbox.sh --require
	hack/build-k8s.sh $(K8S_BINARIES) >/dev/null
	hack/gitea.sh >/dev/null
	# this venv is meant to differ from uv.lock: the check that it matches does not apply
	PATH="$(CURDIR)/$(LATEST)/bin:$$PATH" $(LATEST)/bin/python -m pytest \
	  --deselect tests/unit/test_lock.py::test_this_environment_runs_the_locked_versions

# Re-resolve uv.lock to the newest allowed versions and export the images' list.
lock:
	$(UV) lock --upgrade --python $(PYTHON)
	$(MAKE) requirements

# What the images install, with hashes, exported from uv.lock: braid's runtime
# dependencies, and what building braid's wheel needs.
requirements: requirements/runtime.txt requirements/build.txt
requirements/runtime.txt: uv.lock
	$(UV) export --quiet --frozen --no-dev --no-emit-project --format requirements-txt \
	  --output-file $@
requirements/build.txt: uv.lock
	$(UV) export --quiet --frozen --only-group build --no-emit-project \
	  --format requirements-txt --output-file $@

# The CRDs are generated from the API models; the chart and manifests/install.yaml carry copies.
crds: $(VENV)/.installed
	$(BIN)/braid crds --out crds
	hack/sync-chart-crds.sh
	PATH="$(CURDIR)/$(BIN):$$PATH" hack/render-manifests.sh

lint: $(VENV)/.installed
	$(BIN)/lint-imports
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/vulture

$(VENV)/.installed: pyproject.toml uv.lock hack/requirements-uv.txt
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --quiet --frozen --python $(PYTHON) \
	  --extra test --extra dev
	touch $@

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache
