"""`python -m lab.jobrun`: the job process's stable name, written into sbatch scripts (those on
disk from earlier versions included) and started by workers. The code is `lab.entry.jobrun`."""

import sys

from lab.entry.jobrun import main

if __name__ == "__main__":
    sys.exit(main())
