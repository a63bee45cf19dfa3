"""The contract between Retrainer's three programs: the operator, the trainer and the CLI.

Whatever two of them must agree on across a process boundary is written here once, and each
program imports it; this package imports none of them (a unit test enforces both directions).

- `api`: group/version/kind, labels, annotations, object names.
- `env`: the trainer's environment: one writer (the operator), one reader (the trainer).
- `exits`: the trainer's exit codes, which the Job's podFailurePolicy reads.
- `tracking`: MLflow run tags, run names, the experiment default and the run lookup.
- `metrics`: metric keys of status.metrics and of the MLflow run.
- `layout`: where version N lives on the claim and in MLflow, and its URIs.
- `documents`: the shapes of the manifest, lineage, metadata and failure documents.
- `integrity`: sha256 and the one verifier; each check says who ran it.
- `objectstore`: the MinIO client and the narrow interface the checks use.
- `versions`: the one answer to "the latest verified version".
- `status`: the status vocabulary: condition types, phases, reasons, "is terminal".
"""
