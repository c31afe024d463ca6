"""pytest set-up shared by the unit tests and nbval.

Notebooks run in the ci profile unless the caller chose another (the kernel inherits
this environment), and matplotlib draws off-screen.
"""

import os

os.environ.setdefault("METALEARN_SEP_PROFILE", "ci")
os.environ.setdefault("MPLBACKEND", "Agg")
