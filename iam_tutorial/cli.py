"""What every command line shares: config flags, and user errors as one line with exit code 2.

`python -m iam_tutorial.train`, `.compare` and `.data` take `--mode`, `--set KEY=VALUE` and
`--max-steps`; a bad value, missing data or an unknown plan prints one line that says what to do.
"""

import argparse
import dataclasses
import json
import sys

from iam_tutorial.config import MODES, Config, ConfigError, get_config

USER_ERRORS = (ConfigError,)  # extended below with the data errors, imported lazily


def fail(message: str, code: int = 2):
    """Print `error: message` on stderr and exit (2: the user's input was wrong)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        default=None,
        help=f"preset: {', '.join(MODES)} (config.py); default $IAM_MODE or quick",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="cap on optimizer steps per run (smoke tests)"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. --set n_users=200 lr=1e-3 (see iam_tutorial.config.Config)",
    )


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` strings -> typed Config overrides (value parsed as JSON when it can be)."""
    fields = {f.name for f in dataclasses.fields(Config)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            fail(
                f"--set expects KEY=VALUE with a Config field as KEY, got {pair!r} "
                f"(fields: {', '.join(sorted(fields))})."
            )
        out[key] = parse_value(value)
    return out


def parse_value(value: str):
    """A --set value: JSON when it parses (lists become tuples), else the string itself."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return tuple(parsed) if isinstance(parsed, list) else parsed


def config_from_args(args, parser=None, **fixed) -> Config:
    """The Config the flags ask for, validated; a bad value exits 2 with one line."""
    overrides = {**parse_overrides(args.set), **fixed}
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    try:
        return get_config(args.mode, **overrides)
    except (ConfigError, ValueError, TypeError) as e:
        fail(str(e))


def guarded(main):
    """Run a CLI `main`, turning the user's errors (bad config, missing or partial data) into one
    line and exit code 2 instead of a traceback."""
    from iam_tutorial.data.movielens import DataError

    def wrapper(argv=None):
        try:
            return main(argv)
        except (ConfigError, DataError) as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted; finished results are kept, a re-run resumes.", code=130)

    return wrapper
