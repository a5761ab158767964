"""The end-to-end tests' order: a module marked `longest` first, so that under pytest-xdist (make test-e2e runs
two workers, a module to each whole) the others fill the second worker while it runs, not after it."""


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)  # stable: the rest keep their order
