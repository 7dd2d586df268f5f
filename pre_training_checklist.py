"""Check a training command before spending GPU-days on it: same flags as fine_tuning.py, plus --json.

    python pre_training_checklist.py --dataset CSL_Daily --use_descriptions
"""
import argparse
import logging
import sys

import config
import utils
from uni_sign_ext.checklist import FAIL, Check, report, run_checks
from uni_sign_ext.layout import DataLayout


class FlagParseError(Exception):
    pass


def raise_flag_error(message):
    raise FlagParseError(message)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser("Uni-Sign pre-training checklist", parents=[utils.get_args_parser()])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    if "--json" in argv:  # a flag that does not parse is reported as JSON too, not as argparse's usage text
        parser.error = raise_flag_error
    try:
        args = parser.parse_args(argv)
    except FlagParseError as exc:
        return report([Check("flags", FAIL, str(exc), "fix the flag (see --help)")], as_json=True)
    logging.basicConfig(level=logging.ERROR)  # the report says it all; loaders' warnings would repeat it
    layout = DataLayout.from_config(config, args.dataset)
    return report(run_checks(args, layout, utils.check_supported), as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
