"""Where a task's files are inside its container (no heavy imports: the tool's description
names them at registration)."""

OUT_DIR = "/out"
"""The task's output directory: the files left here come back (attached)."""
WORKSPACE_DIR = "/workspace"
"""Where the workspace is mounted (read-only by default)."""
