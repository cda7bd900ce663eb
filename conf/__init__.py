"""The study's Hydra config tree (``config.yaml`` and its groups), at the repository's top level.

The build installs it inside the package as ``study.conf`` (setup.py: ``package_dir``), so an
editable and a non-editable install compose the same files; the code finds them through
``importlib.resources`` (study/config/paths.py), never through the working directory.
"""
