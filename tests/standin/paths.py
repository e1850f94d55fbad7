"""Where the stand-in's Renode root is (tests/standin/root) and where it was launched from.

LAUNCH_CWD is read when this module is first imported, before the launcher changes to ROOT.
"""

import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "root")
LAUNCH_CWD = os.getcwd()
