"""Screen sharing: invite links, one-controller-at-a-time hand-off, and the per-phone room."""
