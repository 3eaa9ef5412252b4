# The two set-up commands of the README. Each creates the venv of $(ROS_DISTRO) (default jazzy:
# .venv; kilted: .venv-kilted) and installs what it needs. `ROS_DISTRO=kilted make test`.
ROS_DISTRO ?= jazzy
export ROS_DISTRO
VENV := $(if $(filter jazzy,$(ROS_DISTRO)),.venv,.venv-$(ROS_DISTRO))
.PHONY: demo test bench faults
demo:
	scripts/bootstrap.sh
	$(VENV)/bin/residual-control demo $(ARGS)
test:
	scripts/bootstrap.sh
	scripts/run_tests.sh $(ARGS)
bench:
	scripts/bootstrap.sh
	$(VENV)/bin/residual-control bench $(ARGS)
faults:
	scripts/bootstrap.sh
	$(VENV)/bin/residual-control faults $(ARGS)
