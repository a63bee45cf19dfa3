"""The `retrainer` CLI: versions, verify and describe, for people (and scripts) on call.

A package of its own, beside the operator and the trainer rather than inside the operator,
because it is a third program with its own users and its own install: it needs neither kopf
nor torch, and it runs on laptops as well as in the operator image (the in-cluster verify
Job). What it must agree on with the other two (the RetrainJob's API names, the claim layout,
the integrity checks, metric keys, environment names) it imports from `retrainer_contract`,
never from the operator, so none of the three can drift from the others.

One module per command (`versions`, `verify`, `describe`); `__main__` parses the command line.
"""
