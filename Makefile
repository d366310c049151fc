# The front door. `make run` starts the demo; `make test` runs every test.
.PHONY: run test lint bench migrate messages clean help

help:
	@echo "make run    - set everything up and start the demo on http://127.0.0.1:8000"
	@echo "make test   - set everything up, lint, run the tests on SQLite and PostgreSQL"
	@echo "make lint   - ruff check and format"
	@echo "make bench  - benchmarks (results in docs/benchmarks.md)"
	@echo "make messages - extract and compile the nl/fr/en catalogues"

run:
	scripts/run.sh

test:
	scripts/test.sh $(ARGS)

lint:
	scripts/bootstrap.sh dev
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench:
	scripts/bench.sh

messages:
	scripts/bootstrap.sh dev
	.venv/bin/python manage.py makemessages -l en -l nl -l fr --no-obsolete --ignore=.venv --ignore=var --ignore=firmware_bridge --ignore=tests --ignore=scripts
	.venv/bin/python manage.py compilemessages --ignore=.venv

clean:
	rm -rf var/static var/test*.sqlite3
