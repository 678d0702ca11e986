"""The lab: everything that runs *many* models. Cells and their store, the comparison runner and its
report (`compare`), statistics over seeds and users (`stats`), FULL on one GPU (`full`, `workers`,
`sizing`, `fastdata`). The core package never imports from here (tests/test_layout.py)."""
