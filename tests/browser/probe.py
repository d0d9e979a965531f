#!/usr/bin/env python3
"""The probe tests/browser/test_report.sh puts into a copy of a report page, and its checks.

    probe.py inject PAGE OUT            OUT: PAGE with the probe after <head> and before </body>
    probe.py check DOM JSON --runs N --images N --charts N --comparison-rows N
                                        reads the probe's counts from Chromium's --dump-dom
                                        output DOM, writes them to JSON, checks them
    probe.py field JSON KEY             prints a field (a list as space-separated numbers)
    probe.py drawn REGION std=S coloured=C
                                        exit 1 when a screenshot region looks blank

The report has no script of its own; the probe records script errors from the first moment
(in <head>), and once everything has loaded counts what the browser drew, writing it into a
<pre id="probe"> that --dump-dom prints. Only the Python standard library is used.
"""
import argparse
import html
import json
import re
import sys

HEAD = """<script>window.__errors = [];
addEventListener("error", function (e) {
  var what = e.message || ("cannot load " + String(e.target && (e.target.src || e.target.tagName)).slice(0, 60) + "...");
  window.__errors.push(String(what));
}, true);</script>"""

BODY = """<script>addEventListener("load", function () {
  var imgs = [].slice.call(document.images), svgs = [].slice.call(document.querySelectorAll("svg"));
  function rect(el) {
    if (!el) return null;
    var b = el.getBoundingClientRect();
    return [Math.round(b.left + scrollX), Math.round(b.top + scrollY), Math.round(b.width), Math.round(b.height)];
  }
  var scatter = svgs.filter(function (s) { return (s.getAttribute("aria-label") || "").indexOf("Latent space") == 0; })[0];
  var out = {
    errors: window.__errors,
    images: imgs.length,
    broken_images: imgs.filter(function (i) { return !i.complete || i.naturalWidth == 0; }).length,
    svgs: svgs.length,
    empty_svgs: svgs.filter(function (s) {
      var b = s.getBoundingClientRect();
      return b.width < 100 || b.height < 100 || s.querySelectorAll("path.line, circle").length == 0;
    }).length,
    chart_figures: document.querySelectorAll("figure.chart").length,
    image_figures: document.querySelectorAll("figure.image").length,
    runs: document.querySelectorAll("section.run").length,
    comparison_rows: document.querySelectorAll("#comparison tbody tr").length,
    height: document.documentElement.scrollHeight,
    chart: rect(svgs[0]), image: rect(imgs[0]), scatter: rect(scatter)
  };
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


def inject(page, out):
    text = open(page, encoding="utf-8").read()
    if text.count("<head>") != 1 or text.count("</body>") != 1:
        sys.exit(f"FAIL: {page} has {text.count('<head>')} <head> and {text.count('</body>')} </body>, expected one of each")
    if 'id="probe"' in text:
        sys.exit(f"FAIL: {page} already has an element with id probe")
    open(out, "w", encoding="utf-8").write(text.replace("<head>", "<head>" + HEAD).replace("</body>", BODY + "</body>"))


def check(dom, out, want):
    found = re.search(r'<pre id="probe">(.*?)</pre>', open(dom, encoding="utf-8").read(), re.S)
    if not found:
        sys.exit(f"FAIL: the probe did not run: no <pre id=\"probe\"> in {dom}")
    probe = json.loads(html.unescape(found.group(1)))
    json.dump(probe, open(out, "w"))
    problems = []

    def expect(what, got, expected):
        if got != expected:
            problems.append(f"{what}: {got}, expected {expected}")

    expect("script errors", probe["errors"], [])
    expect("run sections", probe["runs"], want.runs)
    expect("images", probe["images"], want.images)
    expect("image figures", probe["image_figures"], want.images)
    expect("images the browser could not decode", probe["broken_images"], 0)
    expect("charts (svg)", probe["svgs"], want.charts)
    expect("chart figures", probe["chart_figures"], want.charts)
    expect("charts under 100 px or without a line or marker", probe["empty_svgs"], 0)
    expect("comparison table rows", probe["comparison_rows"], want.comparison_rows)
    for region in ("chart", "image", "scatter"):
        box = probe[region]
        if not box or box[2] < 20 or box[3] < 20:
            problems.append(f"the first {region}: not on the page, or smaller than 20 px: {box}")
    if problems:
        sys.exit(f"FAIL: {dom}: " + "; ".join(problems) + f"\nprobe: {probe}")
    print(f"{dom}: {probe['runs']} runs, {probe['svgs']} charts, {probe['images']} images, "
          f"{probe['comparison_rows']} comparison rows, no script error")


def field(path, key):
    value = json.load(open(path))[key]
    print(" ".join(str(v) for v in value) if isinstance(value, list) else value)


def drawn(region, stats):
    values = dict(kv.split("=", 1) for kv in stats if "=" in kv)
    spread, coloured = float(values["std"]), float(values["coloured"])
    # A drawn chart has dark axes and text on white, and coloured lines or markers; an image
    # grid has dark and light pixels. A blank region has neither.
    if spread < 10 or (region in ("chart", "scatter") and coloured < 0.0005):
        sys.exit(f"FAIL: the {region} region is blank: grey-level spread {spread}, coloured fraction {coloured}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "inject" and len(args) == 2:
        inject(*args)
    elif mode == "check":
        parser = argparse.ArgumentParser(prog="probe.py check")
        parser.add_argument("dom")
        parser.add_argument("out")
        for flag in ("--runs", "--images", "--charts", "--comparison-rows"):
            parser.add_argument(flag, type=int, required=True)
        want = parser.parse_args(args)
        check(want.dom, want.out, want)
    elif mode == "field" and len(args) == 2:
        field(*args)
    elif mode == "drawn" and len(args) >= 2:
        drawn(args[0], args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
