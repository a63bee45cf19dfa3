"""The kubelet stand-in ("pod runner"): runs the local world's pods as local processes.

The world has a real apiserver, controller manager and scheduler but no container runtime,
so this package plays the node: it registers the Node and keeps it Ready, provisions
hostPath volumes for claims, and runs every pod bound to the node as process groups,
posting pod status the way a kubelet would. It is its own package because it is its own
program: the world starts it as `python -m retrainer_world.kubelet` (runner.py) and talks
to it only through the apiserver; the lifecycle modules never import its code.
"""
