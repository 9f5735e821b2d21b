"""Pictures of what ``bench`` and ``validate`` measured: a PNG of tokens/s per runtime and device, and a
self-contained HTML page (charts inlined as data URIs, no network) of where and how much a device's logits differ
from the host's. matplotlib draws off-screen (Agg), so neither needs a display.
"""

from __future__ import annotations

import base64
import html
import io
import platform
from datetime import datetime, timezone
from pathlib import Path

from edgebit import __version__
from edgebit.errors import EdgebitError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path | None) -> bytes:
    """The figure as PNG bytes, also written to ``path`` if given (a clear error if it cannot be)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    data = buffer.getvalue()
    if path is not None:
        _write(path, data)
    return data


def _write(path: Path, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise EdgebitError(f"cannot write {path} ({exc.strerror}); choose another file") from None


def speed_plot(rows: list[dict], title: str, path: Path) -> None:
    """Grouped bars: prefill and decode tokens/s for each (device, runtime) row of ``edgebit bench``.

    ``rows``: {"label": "tvm" or "tvm @ ssh://pi", "prefill": tokens/s, "decode": tokens/s}.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.3 * len(rows) + 3), 3.6))
    labels = [row["label"] for row in rows]
    for ax, key, color in zip(axes, ("prefill", "decode"), ("#4c72b0", "#dd8452")):
        values = [row[key] for row in rows]
        bars = ax.bar(range(len(rows)), values, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{key} tokens/s (higher is better)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(title, fontsize=10)
    _save(figure, path)


def _agreement_chart(reports) -> bytes:
    plt = _pyplot()
    figure, (error_ax, top1_ax) = plt.subplots(2, 1, figsize=(7.5, 5.0), sharex=True)
    for report in reports:
        positions = report.per_position
        error_ax.plot([max(v, 1e-9) for v in positions["max_abs_error"]], label=report.runtime, linewidth=1.2)
        top1_ax.plot([100 * v for v in positions["top1_agreement"]], label=report.runtime, linewidth=1.2)
    if reports:
        bound = reports[0].agreement.error_bound
        error_ax.axhline(bound, color="red", linestyle="--", linewidth=1, label="bound")
    error_ax.set_yscale("log")  # errors are often 1e-5 of a bound near 0.1: a linear axis shows them as zero
    error_ax.set_ylabel("max |device - host|")
    top1_ax.set_ylabel("top-1 agreement (%)")
    top1_ax.set_xlabel("position in the sequence")
    top1_ax.set_ylim(-5, 105)
    for ax in (error_ax, top1_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(figure, None)


def _device_section(manifest, device: str, reports) -> str:
    chart = base64.b64encode(_agreement_chart(reports)).decode()
    passed = all(r.passed for r in reports)
    rows = "".join(
        f"<tr><td>{html.escape(r.runtime)}</td><td>{html.escape(str(manifest.runtimes.get(r.runtime, {}).get('version', '')))}"
        f"</td><td>{r.agreement.cosine:.7f}</td><td>{r.agreement.max_abs_error:.3g}</td>"
        f"<td>{r.agreement.error_bound:.3g}</td><td>{r.agreement.top1_agreement:.1%}</td>"
        f"<td>{r.reference_perplexity:.3f}</td><td>{r.device_perplexity:.3f}</td>"
        f"<td class={'ok' if r.passed else 'fail'}>{'pass' if r.passed else 'FAIL'}</td></tr>" for r in reports)
    return f"""<h2>{html.escape(device)}: <span class="{'ok' if passed else 'fail'}">{'passed' if passed else 'FAILED'}</span></h2>
<table><tr><th>runtime</th><th>version</th><th>cosine</th><th>max abs error</th><th>bound</th><th>top-1</th>
<th>perplexity host</th><th>perplexity device</th><th></th></tr>{rows}</table>
<p>Per position: the largest error over the batch, and the share of sequences with the host's top-1 token.</p>
<img alt="per-position agreement on {html.escape(device)}" src="data:image/png;base64,{chart}">
"""


def validation_report(bundle, results: list[tuple[str, list]], path: Path) -> None:
    """One HTML page: the verdict, the bound, and per device a table of its runtimes (versions, cosine, errors,
    perplexities) with the per-position chart. ``results``: (device, validation reports) pairs."""
    from edgebit.validate.agreement import MAX_ABS_ERROR_FRACTION, MIN_COSINE, NOISE_FACTOR

    manifest = bundle.manifest
    passed = all(r.passed for _, reports in results for r in reports)
    devices = ", ".join(device for device, _ in results)
    sections = "".join(_device_section(manifest, device, reports) for device, reports in results)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgebit validation: {html.escape(str(bundle.root.name))}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child{{text-align:left}}
.ok{{color:#1a7f37;font-weight:bold}}.fail{{color:#cf222e;font-weight:bold}}dt{{font-weight:bold}}</style></head>
<body><h1>{html.escape(str(bundle.root.name))} on {html.escape(devices)}:
<span class="{'ok' if passed else 'fail'}">{'passed' if passed else 'FAILED'}</span></h1>
<dl><dt>model</dt><dd>{html.escape(manifest.model.family)}, max_seq_len {manifest.model.max_seq_len}</dd>
<dt>target</dt><dd>{html.escape(manifest.target.name)} ({html.escape(manifest.target.triple)})</dd>
<dt>devices</dt><dd>{html.escape(devices)}</dd>
<dt>bound</dt><dd>cosine &ge; {MIN_COSINE} (less where the rounding noise explains it), max abs error &le;
{MAX_ABS_ERROR_FRACTION:.0%} of the host's largest |logit| or {NOISE_FACTOR:g}x its rounding noise ({manifest.model.rounding_noise:.3g}), same argmax wherever the host's
top-2 margin is clear</dd>
<dt>made by</dt><dd>edgebit {__version__} on {html.escape(platform.node())}, {when}</dd></dl>
{sections}</body></html>
"""
    _write(path, page.encode())
