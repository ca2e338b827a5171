"""The README is the front door: short, and its first example runs as written.

- The first ```python block runs in a fresh interpreter whose environment
  has no KERAS_BACKEND, from a folder outside the repository, offline (it
  uses the shipped `code` pair): a reader who copies it on a new machine
  gets what it promises. It must import `keras_specdec` before Keras
  (which picks its backend on import); this test is what keeps it so.
- The README stays at most 300 lines, and every relative link in it points
  at a file that exists (the docs pages it sends readers to).
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def read_readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


def first_python_block(text):
    match = re.search(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert match, "README.md has no ```python block"
    return match.group(1)


def test_first_python_block_extracted():
    code = first_python_block("x\n```bash\nls\n```\n```python\na = 1\n```\n")
    assert code == "a = 1\n"


def test_readme_quickstart_runs_as_written(tmp_path):  # ~30 s on 2 CPU cores
    code = first_python_block(read_readme())
    assert "max_length=" in code, "keep the quickstart short (max_length)"
    script = tmp_path / "quickstart.py"
    script.write_text(code, encoding="utf-8")
    environment = {
        key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"
    }
    # This checkout first (a worktree's editable install may point elsewhere).
    environment["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "acceptance_rate" in result.stdout


def test_readme_is_short_and_its_links_exist():
    text = read_readme()
    lines = text.count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move detail to docs/"
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    assert local, "README.md links to no docs page"
    missing = [t for t in local if not os.path.exists(os.path.join(ROOT, t))]
    assert not missing, f"README.md links to missing files: {missing}"
