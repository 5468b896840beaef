"""Registration: the plugins load without their heavy libraries."""

from __future__ import annotations

import subprocess
import sys


class TestRegistration:
    def test_registering_loads_no_image_library(self) -> None:
        """Registering resize and shards (every start of the command) loads no codec or pyarrow."""
        code = (
            "import sys\n"
            "import dpp_image.plugin as plugin\n"
            "names = []\n"
            "plugin.register_processors(register=lambda name, cls: names.append(name))\n"
            "plugin.register_post_processors(register=lambda name, cls: names.append(name))\n"
            "assert names == ['resize', 'shards'], names\n"
            "heavy = {'PIL', 'pyarrow', 'fsspec', 'simplejpeg', 'numpy'} & set(sys.modules)\n"
            "print(sorted(heavy))\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert completed.stdout.strip() == "[]"
