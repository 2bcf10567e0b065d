"""The compiled part of Plowline; everything else is in pyproject.toml.

The collector's straight path for plain requests, in C
(src/plowline/collector/_plain.c). It is optional: where it cannot be built (no
C compiler), the install goes on and plowline.collector.plainpath uses Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "plowline.collector._plain",
            sources=["src/plowline/collector/_plain.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
