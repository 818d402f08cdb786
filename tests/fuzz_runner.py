"""Run many gpsgpu command lines in one process and report each outcome as a JSON line.

Used by tests/test_fuzz.py: one Python start for hundreds of cases. Each case runs ``cli.main``
with stdout and stderr captured and an alarm as a time limit; the report says the exit status,
whether stderr shows a traceback or an internal error, and stderr's last lines.

    python tests/fuzz_runner.py CASES.json > RESULTS.jsonl
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sys
import traceback


class CaseTimeout(BaseException):
    """The case ran past its limit (a BaseException, so no ``except Exception`` in gpsgpu hides it)."""


def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeout


def run_case(argv: list[str], limit_s: int) -> dict[str, object]:
    from gpsgpu import cli

    err, out = io.StringIO(), io.StringIO()
    status: object = 0
    timed_out = False
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit_s)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            cli.main(argv)
    except SystemExit as exc:
        status = exc.code if exc.code is not None else 0
    except CaseTimeout:
        timed_out = True
        status = None
    except BaseException:  # escaped main(): exactly what the fuzz is after
        status = "escaped"
        err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
    text = err.getvalue()
    return {
        "argv": argv,
        "status": status,
        "timed_out": timed_out,
        "traceback": "Traceback (most recent call last)" in text,
        "internal": "internal error" in text,
        "stderr_tail": text.strip().splitlines()[-3:],
    }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        cases = json.load(handle)
    for case in cases:
        result = run_case(case["argv"], int(case.get("limit_s", 60)))
        sys.__stdout__.write(json.dumps(result) + "\n")
        sys.__stdout__.flush()


if __name__ == "__main__":
    main()
