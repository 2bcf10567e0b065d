"""The compiled part of Plowline; everything else is in pyproject.toml.

The collector's straight path for plain requests
(src/plowline/collector/_plain.c), enrichment's per-event loops
(src/plowline/_core.c) and the loader's cutting of enriched TSV into columns
(src/plowline/storage/_columns.c), in C. All are optional: where they cannot
be built (no C compiler), the install goes on and Plowline uses its Python
code (plowline.collector.plainpath, plowline.compiled) or Arrow's reader
(plowline.storage.batch).
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
        Extension(
            "plowline.storage._columns",
            sources=["src/plowline/storage/_columns.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
