"""The compiled part of Plowline; everything else is in pyproject.toml.

The collector's straight path for plain requests
(src/plowline/collector/_plain.c) and enrichment's per-event loops
(src/plowline/_core.c), in C. Both are optional: where they cannot be
built (no C compiler), the install goes on and Plowline uses its Python code
(plowline.collector.plainpath, plowline.compiled).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "plowline.collector._plain",
            sources=["src/plowline/collector/_plain.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "plowline._core",
            sources=["src/plowline/_core.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
