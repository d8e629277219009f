import importlib.util
import sys
from pathlib import Path

# --import-mode=importlib puts no test directory on sys.path, and other services' unit tests may
# keep a fakes.py too: this one is loaded under its own name (test modules: `import outcomes_fakes`).
if "outcomes_fakes" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("outcomes_fakes", Path(__file__).with_name("fakes.py"))
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["outcomes_fakes"] = _module
    _spec.loader.exec_module(_module)
