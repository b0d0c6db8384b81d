#!/usr/bin/env python3
"""Django's command line for the bench peer (bench/compare.sh runs `migrate`)."""

import os
import sys
from pathlib import Path

# The project package lives in this directory; its parent goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "simplejwt_site.settings")

from django.core.management import execute_from_command_line  # noqa: E402

execute_from_command_line(sys.argv)
