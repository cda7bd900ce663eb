"""What pyproject.toml cannot say: the top-level ``conf/`` is the package ``study.conf``, and the
study's Hydra search-path plugin lives in Hydra's ``hydra_plugins`` namespace package.

Every other setting is in pyproject.toml.  The Hydra config tree stays at the repository's top
level, where a Hydra project keeps it, and an install (editable or not) carries it inside the
package, so ``study`` composes the same configs from any working directory.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["study", "study.*"]) + ["study.conf", "hydra_plugins.study_user_config"],
      package_dir={"study.conf": "conf"})
