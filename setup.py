"""Build the compiled core.

Every ``src/moonfire_core/_*_c.pyx`` becomes an extension module.  Setting
``MOONFIRE_NO_EXTENSIONS=1`` at build time makes a pure-Python install (the
twins are always shipped).  ``MOONFIRE_CYTHON_ANNOTATE=1`` writes the HTML
annotation next to each ``.pyx``; ``MOONFIRE_CYTHON_TRACE=1`` enables line
tracing for coverage.
"""

import os
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).parent
NO_EXTENSIONS = bool(os.environ.get("MOONFIRE_NO_EXTENSIONS"))
TRACE = bool(os.environ.get("MOONFIRE_CYTHON_TRACE"))


def extensions() -> list[Extension]:
    import numpy
    from Cython.Build import cythonize

    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if TRACE:
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
    modules = [
        Extension(
            f"moonfire_core.{pyx.stem}",
            [str(pyx.relative_to(HERE))],
            include_dirs=[numpy.get_include()],
            define_macros=macros,
            extra_compile_args=["-O2"],
        )
        for pyx in sorted((HERE / "src" / "moonfire_core").glob("_*_c.pyx"))
    ]
    directives = {"language_level": 3, "embedsignature": True}
    if TRACE:
        directives["linetrace"] = True
    return cythonize(
        modules,
        compiler_directives=directives,
        annotate=bool(os.environ.get("MOONFIRE_CYTHON_ANNOTATE")),
    )


if NO_EXTENSIONS:
    print("*** moonfire: pure-Python build (MOONFIRE_NO_EXTENSIONS is set)")
    setup()
else:
    print("*** moonfire: accelerated build")
    setup(ext_modules=extensions())
