"""The study's user config directory on Hydra's config search path, before the shipped tree.

A SearchPathPlugin (Hydra's public plugin interface): Hydra finds it in the ``hydra_plugins``
namespace package and hands it every config search path it makes.  It acts only on the study's
compositions, those whose primary config directory is the study's tree
(study.config.paths.config_dir()): the user directory (``--config-dir DIR`` = ``$STUDY_CONFIG_DIR``,
else ``$XDG_CONFIG_HOME/study``, else ``~/.config/study``) goes right before that tree, so that a
user preset of a shipped name replaces the shipped one (Hydra takes the first match on the path).
Any other Hydra app in the environment is left alone.
"""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin

PROVIDER = "study-user"


class StudyUserConfig(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from study.config.paths import config_dir, user_config_dir  # no Hydra, no engine

        tree = config_dir().resolve()
        elements = search_path.get_path()
        main = next((e for e in elements if e.path and Path(e.path.removeprefix("file://")) == tree), None)
        user = user_config_dir()
        if main is None or not user.is_dir() or any(e.provider == PROVIDER for e in elements):
            return
        search_path.prepend(PROVIDER, f"file://{user.resolve()}", anchor=SearchPathQuery(main.provider, main.path))
