"""The product demo, and the tiny dataset it trains on.

`demo.py` is `make demo` (`python -m retrainer_demo`): the whole product on the local world.
`leftovers.py` removes what an earlier demo left, whatever state it ended in.
`shapes.py` generates a small deterministic YOLO dataset plus label corrections; the demo,
the tests and the benchmarks all train on it. Neither is part of the world itself: the demo
is a client of the world (`retrainer_world`), like the tests are.
"""
