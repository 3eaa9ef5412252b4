# The two set-up commands of the README. Each creates .venv and installs what it needs.
.PHONY: demo test bench faults
demo:
	scripts/bootstrap.sh
	.venv/bin/residual-control demo $(ARGS)
test:
	scripts/bootstrap.sh
	scripts/run_tests.sh $(ARGS)
bench:
	scripts/bootstrap.sh
	.venv/bin/residual-control bench $(ARGS)
faults:
	scripts/bootstrap.sh
	.venv/bin/residual-control faults $(ARGS)
