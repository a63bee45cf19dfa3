"""The kubelet stand-in ("pod runner"): runs the local world's pods as processes or containers.

The world has a real apiserver, controller manager and scheduler but no container runtime,
so this package plays the node: it registers the Node and keeps it Ready, provisions
hostPath volumes for claims, and runs every pod bound to the node as process groups or,
in namespaces labelled `retrainer.dev/pod-runtime=container`, as podman + runc containers of
the images `make images` built (containers.py, security.py, service.py), posting pod status
the way a kubelet would. It is its own package because it is its own program: the world
starts it as `python -m retrainer_world.kubelet` (runner.py) and talks to it only through
the apiserver and its command line; the lifecycle modules never import its code.
"""
