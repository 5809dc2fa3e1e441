"""Deploying: the I/O side of the exporters. Builds the images the targets run and applies the
documents with each engine's own client (DESIGN.md §3).

commands    the one choke point for external commands (argv, exit code, output tail)
contexts    build contexts: generated Dockerfiles for process services, function images
building    ``build_images``: every image the targets need, content-tagged
swarm       ``docker stack deploy`` / ``rm``, tasks and their host ports, scaling
kubernetes  server-side apply with the official client; the dry run prints the requests
"""
