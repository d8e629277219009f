import os

# No image can be pulled here (offline-build.md): Testcontainers' reaper must stay off and the
# fixtures clean up after themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

pytest_plugins = ["rapport_testing.fixtures"]
