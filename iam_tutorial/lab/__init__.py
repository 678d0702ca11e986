"""The lab: everything that runs *many* models. An experiment (`experiments`: a run's config and
the grid of plans, item inputs, seeds and budgets), its cells' store (`store`), the runner
(`runner`) and the report (`report`), with `compare` as their command line; statistics over seeds
and users (`stats`); FULL on one GPU (`full`, `workers`, `sizing`, `fastdata`). The core package
never imports from here (tests/test_layout.py)."""
