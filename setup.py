"""Build the optional C++ row builder of `irwatchd detect` (see irwatchd/detection/native_rows.py).

The rest of the project is configured in pyproject.toml. The extension needs Hyperscan and RE2
with their headers (Debian: `apt-get install g++ libhyperscan-dev libre2-dev`). Without them
the build skips it, and `detect` builds the same rows in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "irwatchd.detection._rawrows",
            sources=["irwatchd/detection/_rawrows.cpp"],
            libraries=["hs", "re2"],
            extra_compile_args=["-std=c++17", "-Wall", "-Wextra"],
            language="c++",
            optional=True,
        )
    ]
)
