"""``python -m lstm_core``: see :mod:`lstm_core.cli.main`."""

import sys

from lstm_core.system.allocator import use_huge_pages

use_huge_pages()  # before PyTorch loads, which reads it once

from lstm_core.cli.main import main  # noqa: E402

sys.exit(main())
