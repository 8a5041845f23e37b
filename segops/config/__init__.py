"""Stage 1: load segops.yaml and the manifests into a typed, validated Workspace (schemas,
cross-checks, `fmt`).
"""
