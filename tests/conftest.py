import os

# No image can be pulled here (offline-build.md): Testcontainers' reaper must stay off and the
# fixtures clean up after themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

pytest_plugins = ["rapport_testing.fixtures"]


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "runs_last: changes state every later test would share (clinic-wide "
                                       "closures, rotas); run after all the others")


def pytest_collection_modifyitems(config, items) -> None:
    # A generated-request run (schemathesis) writes whatever its schemas allow into the shared system:
    # it goes last, so no other test sees its data.
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)
