#!/usr/bin/env python3
"""Cuts the "Samples and reconstructions" grids of each run out of a `vae-ebm report` page
(keeping the page's own style), for the screenshot beside the table.
Usage: grids_page.py REPORT_HTML OUT_HTML"""
import re
import sys

page = open(sys.argv[1]).read()
head = page[:page.index("<body")]
body = "<body><main>"
for title, figures in re.findall(
        r'<h2>Run ([^<]*)</h2>.*?<h3>Samples and reconstructions</h3>\n(<div class="figures">.*?</div>\n)', page, re.S):
    grids = [f for f in re.findall(r"<figure.*?</figure>\n", figures, re.S) if "reconstructions" not in f]
    body += "<h2>%s: one grid per sampler (64 prior samples, decoder means)</h2><div class=\"figures\">%s</div>" % (
        title, "".join(grids))
open(sys.argv[2], "w").write(head + body + "</main></body></html>")
