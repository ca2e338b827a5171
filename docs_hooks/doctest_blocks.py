"""MkDocs hook: doctest examples in docstrings render as code blocks.

The package's docstrings hold doctests (`>>> ...` lines and their output)
outside any `Examples:` section; plain Markdown reads `>>>` as three nested
block quotes. This hook adds a Markdown preprocessor, to the pages and to the
docstrings mkdocstrings renders, that fences each run of doctest lines (from
a `>>>` line to the next blank line) as a `pycon` code block. Lines already
inside a ``` fence are left alone.
"""

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor

FENCE = re.compile(r"^(\s*)(```|~~~)")
PROMPT = re.compile(r"^(\s*)>>> ")


class DoctestFences(Preprocessor):
    def run(self, lines):
        out, in_fence, in_doctest, indent = [], False, False, ""
        for line in lines:
            if in_doctest and not line.strip():
                out.append(indent + "```")
                in_doctest = False
            if not in_doctest and FENCE.match(line):
                in_fence = not in_fence
            elif not in_fence and not in_doctest and PROMPT.match(line):
                indent = PROMPT.match(line).group(1)
                if out and out[-1].strip():
                    out.append("")
                out.append(indent + "```pycon")
                in_doctest = True
            out.append(line)
        if in_doctest:
            out.append(indent + "```")
        return out


class DoctestFencesExtension(Extension):
    def extendMarkdown(self, md):
        # Before the fenced-code preprocessors (superfences runs at 30).
        md.preprocessors.register(DoctestFences(md), "doctest_fences", 40)


def on_config(config):
    config.markdown_extensions.append(DoctestFencesExtension())
    return config
