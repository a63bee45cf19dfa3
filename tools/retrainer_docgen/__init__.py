"""Documentation generated from the API: `python -m retrainer_docgen.apidocs` writes docs/api.md.

Kept out of the world package because it has nothing to do with running a cluster: it only
reads the CRD in crds/ (run by `make crds-sync`, checked by tests/unit/test_api_docs.py).
"""
