"""Run README code blocks in order, in the current directory; used by tests/test_readme.py.

    python tests/readme_runner.py BLOCKS.json RESULTS.json

BLOCKS.json is a list of {"line", "lang", "code"}. Python blocks share one namespace, as a reader
who pastes them one after another into one session; bash blocks run with `bash -euo pipefail`.
Every block runs even after an earlier one failed (its result then says so), and RESULTS.json
gets one {"line", "lang", "ok", "output"} per block, written after each block.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
import traceback

_TAIL = 6000


def _run_python(code: str, line: int, namespace: dict) -> tuple[bool, str]:
    buffer = io.StringIO()
    ok = True
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102 - the README's own code
        except BaseException:  # noqa: BLE001 - a README block may raise anything; report it whole
            ok = False
            traceback.print_exc(file=buffer)
    return ok, buffer.getvalue()


def _run_bash(code: str) -> tuple[bool, str]:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    out = proc.stdout
    if proc.returncode:
        out += f"\n[bash exited with status {proc.returncode}]"
    return proc.returncode == 0, out


def main(blocks_path: str, results_path: str) -> int:
    blocks = json.loads(open(blocks_path, encoding="utf-8").read())
    namespace: dict = {"__name__": "__readme__"}
    results = []
    first_failure = None
    for block in blocks:
        t0 = time.perf_counter()
        if block["lang"] == "python":
            ok, out = _run_python(block["code"], block["line"], namespace)
        else:
            ok, out = _run_bash(block["code"])
        if not ok and first_failure is None:
            first_failure = block["line"]
        elif not ok:
            out = f"(an earlier block failed first: README.md line {first_failure})\n" + out
        results.append({"line": block["line"], "lang": block["lang"], "ok": ok,
                        "seconds": round(time.perf_counter() - t0, 1), "output": out[-_TAIL:]})
        with open(results_path, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
        print(f"README.md:{block['line']} {block['lang']}: {'ok' if ok else 'FAILED'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
