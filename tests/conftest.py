"""Test setup: 8 virtual CPU devices before JAX starts, absl flags parsed for grain workers."""
import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

from data_pipelines.synthfaces import builder  # noqa: E402


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> str:
    """A small SynthFaces dataset shared by the read-side tests (2 train shards, 1 test shard)."""
    root = tmp_path_factory.mktemp("synth")
    return builder.build(str(root), num=96, num_test=16, image_size=64, seed=3, workers=1, num_shards=2)
