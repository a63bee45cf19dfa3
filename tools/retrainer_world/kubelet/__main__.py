"""`python -m retrainer_world.kubelet --kubeconfig K --state S [--node N]`: the pod runner."""

import sys

from retrainer_world.kubelet.runner import main

if __name__ == "__main__":
    sys.exit(main())
