import sys
from pathlib import Path

# The fault tests' helpers (fault_shoppers, fault_checks) beside them.
sys.path.insert(0, str(Path(__file__).parent))
