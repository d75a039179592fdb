"""Renders the review as one self-contained HTML page from report.html.j2 (Jinja2, autoescaped).

The page has inline CSS and its plots (matplotlib) and images as data: URIs, and no scripts, so it
works offline and from any file store. This module turns the facts gathered by
components.report.review.gather into what the template shows; the template only lays it out.
"""

import base64
import io
import os
from typing import Any, Dict, List, Optional

from common.redact import printable
from components.report.results import BASELINE, CANDIDATE, DISPLAY, LOWER_IS_BETTER, decision_text

TEMPLATE = "report.html.j2"


def _png(fig) -> str:
    """The figure as a data: URI (PNG), closed afterwards so figures do not pile up."""
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return _data_uri(buf.getvalue())


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def training_outcome(history: Dict[str, Any]) -> str:
    """One sentence: epochs run, the epoch whose weights were exported, early stop, resume."""
    epochs = history.get("epochs", [])
    if not epochs:
        return ""
    text = f"{len(epochs)} epoch{'s' if len(epochs) != 1 else ''} in {sum(e.get('seconds', 0) for e in epochs):.0f} s"
    if history.get("stopped_early"):
        text += ", stopped early"
    asked = history.get("config", {}).get("epochs")
    if history.get("stopped_for_time") and asked:
        budget = history.get("config", {}).get("time_budget_minutes", 0)
        steps = history.get("steps") or {}
        if steps.get("done") and steps.get("asked"):
            share = asked * steps["done"] / steps["asked"]
            text += (f", stopped for time ({steps['done']} of {steps['asked']} steps, {share:.1f} of {asked} "
                     f"epochs, fit the {budget:g}-minute budget)")
        else:
            text += f", stopped for time ({len(epochs)} of {asked} epochs fit the {budget:g}-minute budget)"
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


def _per_class_chart(per_class: Dict[int, Dict[str, Optional[float]]]):
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    classes = sorted(per_class)
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(5.5, 4.4))
    ax.bar(x - 0.2, [per_class[c]["precision"] or 0 for c in classes], 0.4, label="precision")
    ax.bar(x + 0.2, [per_class[c]["recall"] or 0 for c in classes], 0.4, label="recall")
    ax.set_xticks(x, [str(c) for c in classes]), ax.set_ylim(0, 1.05), ax.set_xlabel("class")
    ax.set_title("per-class precision and recall (eval)"), ax.legend(loc="lower right"), ax.grid(axis="y", alpha=0.3)
    return fig


GROUP_COLOURS = {"": "#34a853", "phone proxy": "#ea4335", "pale-wall proxy": "#4285f4"}


def _shifted_chart(rows: List[Dict[str, Any]]):
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    from matplotlib.patches import Patch  # pylint: disable=import-outside-toplevel
    fig, ax = plt.subplots(figsize=(5.5, 0.32 * len(rows) + 1.2))
    rows = rows[::-1]
    names = [r["name"] for r in rows]
    values = [r["accuracy"] for r in rows]
    # The 95 % interval as an error bar, where the row has one (an older report's rows do not).
    errors = [[max(0.0, r["accuracy"] - r.get("low", r["accuracy"])) for r in rows],
              [max(0.0, r.get("high", r["accuracy"]) - r["accuracy"]) for r in rows]]
    bars = ax.barh(names, values, xerr=errors, capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "#555"},
                   color=[GROUP_COLOURS.get(r.get("group", ""), "#4285f4") for r in rows])
    for bar, value in zip(bars, values):
        inside = value >= 0.1  # on the bar in white, or past a short bar in black
        ax.text(0.01 if inside else value + 0.01, bar.get_y() + bar.get_height() / 2, f"{value:.2f}", va="center",
                fontsize=8, color="white" if inside else "black")
    ax.set_xlim(0, 1), ax.set_xlabel("accuracy (bars: 95 % interval)"), ax.grid(axis="x", alpha=0.3)
    ax.axvline(1 / 6, color="#999", linestyle=":", linewidth=1)  # a guess among the six classes
    groups = [g for g in GROUP_COLOURS if any(r.get("group", "") == g for r in rows)]
    ax.legend(handles=[Patch(color=GROUP_COLOURS[g], label=g or "as they are") for g in groups],
              loc="lower right", fontsize=8)
    ax.set_title("eval images as they are, and shifted")
    fig.tight_layout()
    return fig


def _shifted_view(shifted: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if not shifted["rows"]:
        return None
    return {"evaluated": shifted["evaluated"], "chart": _png(_shifted_chart(shifted["rows"])),
            "rows": [dict(name=r["name"], group=r.get("group", ""), accuracy=r["accuracy"],
                          interval=f"{r['low']:.2f}-{r['high']:.2f}" if "low" in r else "",
                          src=_data_uri(r["sample"])) for r in shifted["rows"]]}


def number(value) -> str:
    """A metric for people: '–' if absent, an integer as one, else 4 decimals."""
    if value is None:
        return "–"
    return f"{int(value)}" if float(value).is_integer() and abs(value) > 1 else f"{value:.4f}"


def signed(value) -> str:
    """A change for people: '–' if absent, else with its sign."""
    return "–" if value is None else f"{value:+.4f}"


def _metric_rows(evaluation: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The metrics table: each shown metric with its thresholds and whether they passed."""
    failed = {(f["metric"], f["kind"]) for f in evaluation["failures"]}
    rows = []
    for name, label in DISPLAY.items():
        values = evaluation["metrics"].get(name)
        if not values:
            continue
        checks = []
        for t in evaluation["thresholds"]:
            if t["metric"] != name:
                continue
            if t["kind"] == "change" and BASELINE not in values:
                checks.append({"text": t["text"], "status": "skipped (no baseline)", "css": "muted"})
            elif (name, t["kind"]) in failed:
                checks.append({"text": t["text"], "status": "FAIL", "css": "fail"})
            else:
                checks.append({"text": t["text"], "status": "pass", "css": "pass"})
        rows.append({"label": label, "lower_is_better": name in LOWER_IS_BETTER, "candidate": values.get(CANDIDATE),
                     "baseline": values.get(BASELINE), "diff": values.get("diff"), "checks": checks})
    return rows


def _decision(facts: Dict[str, Any]) -> List[str]:
    """Why the model was blessed or not, then what the Pusher did with it."""
    lines = decision_text(facts["evaluation"], facts["blessed"], facts["baseline_version"])
    if facts.get("baseline_skipped"):
        lines.append(f"Passed over as the baseline: {facts['baseline_skipped']}.")
    pushed = facts["pushed"]
    if pushed["pushed"]:
        lines.append(f"Pushed as version {pushed['version']}: {pushed['destination']}")
    elif pushed.get("already_serving_version"):
        lines.append(f"Already serving as version {pushed['already_serving_version']}; not pushed again.")
    elif pushed.get("not_pushed_reason"):
        lines.append(f"Not pushed: {pushed['not_pushed_reason']}.")
    else:
        lines.append("Not pushed: the serving directory is unchanged.")
    return lines


def _confusion_view(matrix: List[List[float]]) -> Optional[Dict[str, str]]:
    if not matrix:
        return None
    total = int(sum(sum(row) for row in matrix))
    right = int(sum(matrix[k][k] for k in range(len(matrix))))
    return {"src": _png(_confusion(matrix)),
            "caption": f"{total} eval examples, {right} on the diagonal (right); "
                       f"rows: true class, columns: predicted class."}


def _per_class_view(evaluation: Dict[str, Any]) -> Dict[str, Any]:
    per_class = evaluation["per_class"]
    rows = [dict(values, class_id=c) for c, values in sorted(per_class.items())]
    has_values = any(r["precision"] is not None or r["recall"] is not None for r in rows)
    return {"rows": rows if has_values else [],
            "chart": _png(_per_class_chart(per_class)) if has_values else None,
            "has_baseline": any(r["baseline_precision"] is not None or r["baseline_recall"] is not None for r in rows)}


def _misclassified_view(mis: Dict[str, Any]) -> Dict[str, Any]:
    return {"evaluated": mis["evaluated"],
            "examples": [dict(e, src=_data_uri(e["png"])) for e in mis["examples"]]}


def _data_view(findings: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """DataChecks' findings laid out per split, with every class of any split as a column."""
    if findings is None:
        return None
    splits = findings["splits"]
    classes = sorted({int(c) for s in splits.values() for c in s["classes"]})
    return {"classes": classes,
            "splits": [{"name": name, "examples": s["examples"],
                        "counts": [s["classes"].get(str(c), 0) for c in classes]} for name, s in splits.items()],
            "duplicates": findings["duplicates"], "warnings": findings["warnings"],
            "anomalies": findings.get("anomalies", []),
            "skipped": findings.get("skipped", []), "skipped_count": findings.get("skipped_count", 0)}


def page_context(facts: Dict[str, Any]) -> Dict[str, Any]:
    """What report.html.j2 shows, from the dict built by components.report.review.gather."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    history = facts["history"]
    evaluation = facts["evaluation"]
    return {
        "blessed": facts["blessed"],
        "decision": _decision(facts),
        "metrics": _metric_rows(evaluation),
        "training": {"config": ", ".join(f"{k}={v}" for k, v in history.get("config", {}).items()),
                     "outcome": training_outcome(history),
                     "curves": _png(_curves(history)) if history.get("epochs") else None},
        "confusion": _confusion_view(evaluation["confusion"]),
        "per_class": _per_class_view(evaluation),
        "misclassified": _misclassified_view(facts["misclassified"]),
        "shifted": _shifted_view(facts["shifted"]),
        "data": _data_view(facts["findings"]),
        "paths": facts["paths"],
    }


def _shown(value):
    """Every value the page shows, with what would act instead of showing (a file name's escape
    sequence, a bidirectional override) written as its escape; HTML marked safe stays safe."""
    import markupsafe  # pylint: disable=import-outside-toplevel  (with jinja2)
    if isinstance(value, markupsafe.Markup):
        return markupsafe.Markup(printable(str(value)))
    return printable(value) if isinstance(value, str) else value


def _environment():
    import jinja2  # pylint: disable=import-outside-toplevel

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(__file__))),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=False, lstrip_blocks=False,
                             finalize=_shown)
    env.filters["number"] = number
    env.filters["signed"] = signed
    return env


def render(facts: Dict[str, Any]) -> str:
    """Returns the report page for the dict built by components.report.review.gather."""
    return _environment().get_template(TEMPLATE).render(page=page_context(facts))
