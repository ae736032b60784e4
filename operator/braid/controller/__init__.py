"""The Kubernetes operator: kopf handlers that queue work, reconcilers that converge, decide/ that decides."""
