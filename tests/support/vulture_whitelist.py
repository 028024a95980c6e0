"""What vulture reports as unused in builder/ and tasks.py but is not dead (tests/test_lint.py::test_no_dead_code).

vulture reads this file alongside the code: a name used here counts as used.
The test also imports it, so every entry must name something that exists: an
entry whose code was removed fails the test until it is removed here too.

Add an entry only for what vulture cannot see being used, with a comment
saying what uses it: an attribute a library reads, a dataclass field read
through asdict() or by the tests, a method the tests and benchmarks drive.
Code used by nothing but its own tests is dead: remove it and those tests.
Invoke tasks (@task) are not listed: the test passes --ignore-decorators.
"""

import tarfile
import zipfile

from builder.core.engine import Engine
from builder.core.registry import Registry
from builder.publish.matrix import Job

# Attributes set on library objects, which the library reads when it writes the archive
# (builder/image/assembly/layer.py, builder/local/rootfs.py, builder/gosu/sources/gomod.py).
tarfile.TarInfo.uname
tarfile.TarInfo.gname
zipfile.ZipInfo.external_attr
zipfile.ZipInfo.compress_type

# Dataclass fields: read by the nightly workflow from `invoke matrix`'s JSON (asdict), and by tests.
Job("flavor", "release", "arch", "runner", emulated=False).emulated
Registry.blobs_mounted  # how many blobs a push linked instead of sent; tests/test_examples.py checks it

# The engine wrapper's own API, driven by the engine tests and the benchmarks (pull a published image
# to run it; remove what a test or benchmark made).
Engine.pull
Engine.remove_image

# Invoke reads a task's parameters through inspect.signature, which honours __signature__: builder/cli.py
# sets it to add the shared fetch flags to a task.
import builder.cli  # noqa: E402
import builder.wiring  # noqa: E402
builder.cli.cli("x", fetch=("a",))(lambda c, fetch=None: None).__signature__


# The project's configuration loaded as `invoke` loads it, for what drives the stages without a task: the
# benchmarks (benchmarks/common.py) and the tests (tests/support/engine.py).
builder.wiring.project_config
