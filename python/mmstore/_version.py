"""The one place the version is written: pyproject.toml (scikit-build-core's regex provider) and
CMakeLists.txt (project VERSION) read it from here; CHANGELOG.md has an entry for it."""

__version__ = "0.2.0"
