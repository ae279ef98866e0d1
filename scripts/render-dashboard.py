#!/usr/bin/env python3
"""Render ops/grafana/ragchat-dashboard.json's panels from a Prometheus server
into one PNG: the same PromQL the Grafana dashboard runs, over a time range,
drawn with matplotlib. Used where no Grafana server can be installed (it is on
no registry this project's machines reach); with Grafana, import the JSON.

usage: render-dashboard.py PROMETHEUS_URL START END OUT.png [DASHBOARD.json]
       (START and END in Unix seconds)
"""
import json
import math
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def query_range(base, expr, start, end, step):
    qs = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{qs}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"prometheus: {expr}: {body}")
    return body["data"]["result"]


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:
        a = out.index("{{")
        b = out.index("}}", a)
        out = out[:a] + out[b + 2:]
    return out.strip() or json.dumps(metric)


def fmt_unit(unit):
    def f(v, _pos):
        if unit == "bytes":
            for u in ["B", "KiB", "MiB", "GiB"]:
                if abs(v) < 1024:
                    return f"{v:.0f} {u}"
                v /= 1024
            return f"{v:.1f} TiB"
        if unit == "s":
            return f"{v * 1000:.0f} ms" if abs(v) < 1 else f"{v:.1f} s"
        if unit == "percentunit":
            return f"{v * 100:.0f}%"
        return f"{v:g}"
    return FuncFormatter(f)


def main():
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    base, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    path = sys.argv[5] if len(sys.argv) > 5 else "ops/grafana/ragchat-dashboard.json"
    dash = json.load(open(path))
    panels = dash["panels"]
    step = max(5, int((end - start) / 200))
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(16, 3.1 * rows), squeeze=False)
    fig.patch.set_facecolor("#111217")
    empty = []
    for i, panel in enumerate(panels):
        ax = axes[i // cols][i % cols]
        ax.set_facecolor("#181b1f")
        ax.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        ax.tick_params(colors="#9fa1a5", labelsize=7)
        for s in ax.spines.values():
            s.set_color("#2c3235")
        ax.grid(color="#2c3235", linewidth=0.5)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        ax.yaxis.set_major_formatter(fmt_unit(unit))
        drawn = 0
        for t in panel["targets"]:
            expr = t["expr"].replace("$__rate_interval", "1m")
            for series in query_range(base, expr, start, end, step):
                xs = [datetime.fromtimestamp(float(p[0]), tz=timezone.utc) for p in series["values"]]
                ys = [float(p[1]) if p[1] not in ("NaN", "+Inf", "-Inf") else float("nan") for p in series["values"]]
                ax.plot(xs, ys, linewidth=1.2, label=legend(t.get("legendFormat", ""), series["metric"]))
                drawn += 1
        if drawn:
            ax.legend(fontsize=6, loc="upper left", facecolor="#181b1f", labelcolor="#d8d9da", framealpha=0.7, ncol=2)
        else:
            empty.append(panel["title"])
            ax.text(0.5, 0.5, "no data", color="#9fa1a5", ha="center", va="center", transform=ax.transAxes)
        ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%H:%M"))
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    when = datetime.fromtimestamp(start, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
    fig.suptitle(f"{dash['title']} — {when} UTC, {int(end - start)} s", color="#d8d9da")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    print(f"render-dashboard: {len(panels)} panels, {len(panels) - len(empty)} with data -> {out}")
    for t in empty:
        print(f"render-dashboard: no data: {t}")


if __name__ == "__main__":
    main()
