"""Check a training command before spending GPU-days on it: same flags as fine_tuning.py, plus --json.

    python pre_training_checklist.py --dataset CSL_Daily --use_descriptions
"""
import argparse
import logging
import sys

import utils
from uni_sign_ext.checklist import report, run_checks


def main(argv=None):
    parser = argparse.ArgumentParser("Uni-Sign pre-training checklist", parents=[utils.get_args_parser()])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the report says it all; loaders' warnings would repeat it
    return report(run_checks(args), as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
