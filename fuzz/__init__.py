"""Coverage-guided fuzz targets (atheris/libFuzzer) for the service's parsers: `python -m fuzz.<target>`."""
