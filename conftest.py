"""pytest set-up shared by the unit tests and nbval: notebooks run in the ci profile
unless the caller chose another (their kernels inherit this environment)."""

import os

os.environ.setdefault("METALEARN_SEP_PROFILE", "ci")
