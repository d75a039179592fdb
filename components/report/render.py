"""Renders the review as one self-contained HTML page: inline CSS, plots as embedded PNGs, no scripts."""

import base64
import html
import io
from typing import Any, Dict, List

from components.report.results import BASELINE, CANDIDATE, DISPLAY, LOWER_IS_BETTER, decision_text

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.decision{padding:12px 16px;border-radius:6px;font-size:15px} .decision p{margin:4px 0}
.blessed{background:#e6f4ea;border:1px solid #34a853} .rejected{background:#fce8e6;border:1px solid #ea4335}
table{border-collapse:collapse;font-size:14px} td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.pass{color:#188038;font-weight:600} .fail{color:#c5221f;font-weight:600} .muted{color:#777;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:10px} .cell{width:112px;font-size:11px;text-align:center}
.cell img{width:96px;height:96px;image-rendering:pixelated;border:1px solid #ccc}
.plots img{max-width:100%}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _training_outcome(history: Dict[str, Any]) -> str:
    """One sentence: epochs run, the epoch whose weights were exported, early stop, resume."""
    epochs = history.get("epochs", [])
    if not epochs:
        return ""
    text = f"{len(epochs)} epochs in {sum(e.get('seconds', 0) for e in epochs):.0f} s"
    if history.get("stopped_early"):
        text += ", stopped early"
    if history.get("exported_epoch"):
        best = " (best eval accuracy)" if history["exported_epoch"] == history.get("best_epoch") else ""
        text += f"; exported the weights of epoch {history['exported_epoch']}{best}"
    if history.get("resumed_from_epoch"):
        text += f"; resumed from the checkpoint of epoch {history['resumed_from_epoch']}"
    return text + "."


def _curves(history: Dict[str, Any]):
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    epochs = history.get("epochs", [])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    x = [e["epoch"] for e in epochs]
    for ax, (metric, title) in zip(axes[:2], (("loss", "loss"), ("accuracy", "accuracy"))):
        ax.plot(x, [e.get(metric) for e in epochs], "o-", label="train")
        if epochs and f"val_{metric}" in epochs[0]:
            ax.plot(x, [e.get(f"val_{metric}") for e in epochs], "o-", label="eval")
        ax.set_title(title), ax.set_xlabel("epoch"), ax.legend(), ax.grid(alpha=0.3)
    axes[2].plot(x, [e.get("learning_rate") for e in epochs], "o-", color="tab:gray")
    axes[2].set_title("learning rate (end of epoch)"), axes[2].set_xlabel("epoch"), axes[2].grid(alpha=0.3)
    return fig


def _confusion(matrix: List[List[float]]):
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    m = np.array(matrix)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    image = ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{int(v)}", ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class"), ax.set_title("confusion matrix (eval)")
    ax.set_xticks(range(len(m))), ax.set_yticks(range(len(m)))
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def _per_class(per_class: Dict[int, Dict[str, float]]):
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    classes = sorted(per_class)
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(5.5, 4.4))
    ax.bar(x - 0.2, [per_class[c].get("precision", 0) for c in classes], 0.4, label="precision")
    ax.bar(x + 0.2, [per_class[c].get("recall", 0) for c in classes], 0.4, label="recall")
    ax.set_xticks(x, [str(c) for c in classes]), ax.set_ylim(0, 1.05), ax.set_xlabel("class")
    ax.set_title("per-class precision and recall (eval)"), ax.legend(loc="lower right"), ax.grid(axis="y", alpha=0.3)
    return fig


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{int(value)}" if float(value).is_integer() and abs(value) > 1 else f"{value:.4f}"


def _metrics_table(evaluation: Dict[str, Any]) -> str:
    failed = {(f["metric"], f["kind"]) for f in evaluation["failures"]}
    rows = ["<tr><th>metric</th><th>candidate</th><th>baseline (serving)</th><th>change</th>"
            "<th>threshold</th><th>result</th></tr>"]
    for name, label in DISPLAY.items():
        values = evaluation["metrics"].get(name)
        if not values:
            continue
        thresholds = [t for t in evaluation["thresholds"] if t["metric"] == name]
        checks = []
        for t in thresholds:
            skipped = t["kind"] == "change" and BASELINE not in values
            ok = (name, t["kind"]) not in failed
            status = "skipped (no baseline)" if skipped else ("pass" if ok else "FAIL")
            css = "muted" if skipped else ("pass" if ok else "fail")
            checks.append((html.escape(t["text"]), f'<span class="{css}">{status}</span>'))
        direction = " (lower is better)" if name in LOWER_IS_BETTER else ""
        diff = values.get("diff")
        rows.append(
            f"<tr><td>{label}{direction}</td><td>{_fmt(values.get(CANDIDATE))}</td>"
            f"<td>{_fmt(values.get(BASELINE))}</td><td>{'–' if diff is None else f'{diff:+.4f}'}</td>"
            f"<td>{'<br>'.join(c[0] for c in checks) or '–'}</td><td>{'<br>'.join(c[1] for c in checks) or '–'}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _misclassified(mis: Dict[str, Any]) -> str:
    cells = []
    for e in mis["examples"]:
        src = "data:image/png;base64," + base64.b64encode(e["png"]).decode()
        cells.append(f'<div class="cell">{_img(src, e["source"])}<br>true <b>{e["label"]}</b> → '
                     f'predicted <b>{e["predicted"]}</b> ({e["confidence"]:.2f})<br>'
                     f'<span class="muted">{html.escape(e["source"])}</span></div>')
    head = f'<p class="muted">{len(mis["examples"])} shown of the eval examples the candidate got wrong ' \
           f'({mis["evaluated"]} evaluated).</p>'
    return head + ('<div class="grid">' + "".join(cells) + "</div>" if cells else "<p>None: every eval example is right.</p>")


def _data(data: Dict[str, Any]) -> str:
    labels = data["labels"]
    classes = sorted({c for split in labels.values() for c in split})
    rows = ["<tr><th>split</th><th>examples</th>" + "".join(f"<th>class {c}</th>" for c in classes) + "</tr>"]
    for split, counts in labels.items():
        rows.append(f"<tr><td>{split}</td><td>{data['num_examples'].get(split, sum(counts.values()))}</td>"
                    + "".join(f"<td>{counts.get(c, 0)}</td>" for c in classes) + "</tr>")
    anomalies = data["anomalies"]
    found = ("<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in anomalies) + "</ul>") if anomalies \
        else "<p>Data validation (TFDV against the schema): no anomalies.</p>"
    return "<table>" + "".join(rows) + "</table>" + found


def render(facts: Dict[str, Any]) -> str:
    """Returns the report page for the dict built by components.report.review.gather."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    evaluation, blessed = facts["evaluation"], facts["blessed"]
    decision = decision_text(evaluation, blessed, facts["baseline_version"])
    pushed = facts["pushed"]
    if pushed["pushed"]:
        decision.append(f"Pushed as version {pushed['version']}: {pushed['destination']}")
    elif pushed.get("already_serving_version"):
        decision.append(f"Already serving as version {pushed['already_serving_version']}; not pushed again.")
    elif pushed.get("not_pushed_reason"):
        decision.append(f"Not pushed: {pushed['not_pushed_reason']}.")
    else:
        decision.append("Not pushed: the serving directory is unchanged.")
    config = facts["history"].get("config", {})
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>signs-pipeline review: {'blessed' if blessed else 'not blessed'}</title><style>{_CSS}</style></head><body>",
        "<h1>signs-pipeline model review</h1>",
        f'<p class="muted">model {html.escape(facts["paths"]["model"])}</p>',
        f'<div id="decision" class="decision {"blessed" if blessed else "rejected"}">'
        + "".join(f"<p>{'<b>' + html.escape(line) + '</b>' if i == 0 else html.escape(line)}</p>"
                  for i, line in enumerate(decision)) + "</div>",
        "<h2>Candidate against the serving model</h2>", _metrics_table(evaluation),
        "<h2>Training</h2>",
        f'<p class="muted">config: {html.escape(", ".join(f"{k}={v}" for k, v in config.items()))}</p>',
        f"<p>{html.escape(_training_outcome(facts['history']))}</p>",
        f'<div class="plots">{_img(_png(_curves(facts["history"])), "training curves")}</div>'
        if facts["history"].get("epochs") else "<p>No training epochs (the model was exported untrained).</p>",
        '<h2>Errors by class</h2><div class="plots" id="confusion">',
        _img(_png(_confusion(evaluation["confusion"])), "confusion matrix") if evaluation["confusion"] else "",
        _img(_png(_per_class(evaluation["per_class"])), "per-class precision and recall") if evaluation["per_class"] else "",
        "</div>",
        "<h2>Misclassified eval images</h2>", _misclassified(facts["misclassified"]),
        "<h2>Data</h2>", _data(facts["data"]),
        "</body></html>",
    ]
    return "\n".join(parts)
