"""Run each test runner given on the command line, stream its output, and add
up the `N passed, N failed` lines they end with into one total."""
import os
import re
import subprocess
import sys

SUMMARY = re.compile(r"^(?:\S+: )?(\d+) passed, (\d+) failed")


def main(scripts):
    here = os.path.dirname(os.path.abspath(__file__))
    passed = failed = 0
    for script in scripts:
        print(f"== {script}", flush=True)
        if not os.path.exists(script):
            print(f"  FAIL {script} does not exist")
            failed += 1
            continue
        cmd = [sys.executable, script] if script.endswith(".py") else [os.path.abspath(script)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                errors="replace", cwd=os.path.dirname(here))
        last = None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            m = SUMMARY.match(line.strip())
            if m:
                last = (int(m.group(1)), int(m.group(2)))
        rc = proc.wait()
        if last is None:
            print(f"  FAIL {script} printed no summary line (exit {rc})")
            failed += 1
        else:
            passed += last[0]
            failed += last[1]
            if rc != 0 and last[1] == 0:
                print(f"  FAIL {script} exited {rc}")
                failed += 1
    print(f"total: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
