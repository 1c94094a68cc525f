"""Shared by the Python driver programs: one line per check, exit status 1 on
any failure (drivers/README.md)."""

import contextlib
import io
import os
import sys
import time
import traceback

_passed = 0
_failed = 0


def env(name):
    v = os.environ.get(name)
    if not v:
        raise SystemExit(f"{name} is not set (run through TestDrivers)")
    return v


ROWS = int(os.environ.get("TDB_ROWS", "100000"))


def _report(name, start, err):
    global _passed, _failed
    ms = int((time.monotonic() - start) * 1000)
    if err is None:
        _passed += 1
        print(f"ok   {name} ({ms} ms)", flush=True)
    else:
        _failed += 1
        detail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-4:]).strip()
        print(f"FAIL {name} ({ms} ms): {detail}", flush=True)


def check(name):
    """Decorator: runs the function at once as the check called name."""
    def run(fn):
        start = time.monotonic()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            _report(name, start, e)
        else:
            _report(name, start, None)
        return fn
    return run


async def acheck(name, coro_fn):
    start = time.monotonic()
    try:
        await coro_fn()
    except Exception as e:  # noqa: BLE001
        _report(name, start, e)
    else:
        _report(name, start, None)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def raises(exc_type, fn, *args, **kwargs):
    """Returns the exception fn raises, failing unless it is an exc_type."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError(f"no {exc_type.__name__} raised")


@contextlib.contextmanager
def captured():
    """Captures what the block prints (the seed examples print their rows)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf
    for line in buf.getvalue().splitlines():
        print(f"     | {line}")


def done(label):
    print(f"{label}: {_passed} passed checks, {_failed} failed")
    sys.exit(1 if _failed else 0)
