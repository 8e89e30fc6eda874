"""Training the two-stage DynUNet: data, folds, augmentation, the loop, DDP.

``onfh train`` (``onfh.commands.train``) is the user entry point; the modules here are
importable without torch at import time where possible, so the CLI stays fast.
"""
