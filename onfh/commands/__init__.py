"""Sub-commands of ``onfh``: each module here defines ``register(subparsers)``."""
