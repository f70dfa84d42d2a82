"""``python -m minigan``: the command line (see ``minigan.cli``)."""

import sys

try:
    from minigan.cli import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: nothing to save yet
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
