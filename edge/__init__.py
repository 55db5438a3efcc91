"""The edge: composition root, pipelines, peer sessions, input routing and the HTTP server."""
