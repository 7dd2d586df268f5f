import sys

from uni_sign_ext.patches import main

sys.exit(main())
