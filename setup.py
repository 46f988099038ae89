"""Build step that pyproject.toml cannot express: ship config/ and systemd/ inside the wheel.

The repository keeps the config templates (config/*.toml) and the systemd files
(systemd/*.service, systemd/sysusers.d/vmd.conf) at its top, where operators and tests
read them; a wheel can only carry files inside a package. The build copies them into
vmd/_deploy/ (`vmd systemd paths` lists them, `vmd systemd install` installs them). An
editable install reads them from the checkout instead (vmd.cli.deploy).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# (source folder, glob) -> vmd/_deploy/<source folder>/...
SHIPPED = (("config", "*.toml"), ("systemd", "*.service"), ("systemd", "sysusers.d/*.conf"))


class BuildWithDeployFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "vmd" / "_deploy"
        for folder, pattern in SHIPPED:
            for source in sorted((HERE / folder).glob(pattern)):
                dest = target / source.relative_to(HERE)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest)


setup(cmdclass={"build_py": BuildWithDeployFiles})
