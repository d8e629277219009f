import sys
from pathlib import Path

# --import-mode=importlib puts no test directory on sys.path; mini_yaml lives here.
sys.path.insert(0, str(Path(__file__).parent))
