"""A self-contained HTML report: figures embedded as PNG, plus the PNG files beside it."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from labloop.io.atomic import atomic_path


@dataclass
class Report:
    """Sections of text, figures and tables, rendered to one HTML file.

    Examples
    --------
    >>> report = Report("labloop report")  # doctest: +SKIP
    >>> report.add_figure("Cell count", figure, "cells over time")  # doctest: +SKIP
    >>> report.write("report/")  # doctest: +SKIP
    """

    title: str
    sections: list[dict[str, Any]] = field(default_factory=list)

    def add_text(self, heading: str, text: str) -> None:
        """A heading and a paragraph (plain text, escaped)."""
        self.sections.append({"kind": "text", "heading": heading, "text": text})

    def add_figure(self, heading: str, figure: Figure, caption: str = "") -> None:
        """A matplotlib figure, rendered to PNG now."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        self.sections.append({"kind": "figure", "heading": heading, "png": buffer.getvalue(),
                              "caption": caption})

    def add_table(self, heading: str, table: pd.DataFrame, caption: str = "") -> None:
        """A small table (rounded to 4 significant digits)."""
        self.sections.append({"kind": "table", "heading": heading, "table": table,
                              "caption": caption})

    def add_json(self, heading: str, data: dict[str, Any]) -> None:
        """A JSON block (e.g. evaluation scores)."""
        self.sections.append({"kind": "json", "heading": heading, "data": data})

    def write(self, directory: str | Path) -> Path:
        """Write ``report.html`` and ``figure_NN.png`` into ``directory``; return the HTML path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        figure_number = 0
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section['heading'])}</h2>")
            if section["kind"] == "text":
                parts.append(f"<p>{html.escape(section['text'])}</p>")
            elif section["kind"] == "figure":
                figure_number += 1
                name = f"figure_{figure_number:02d}.png"
                with atomic_path(directory / name) as tmp:
                    tmp.write_bytes(section["png"])
                encoded = base64.b64encode(section["png"]).decode("ascii")
                parts.append(f'<figure><img alt="{html.escape(section["heading"])}" '
                             f'src="data:image/png;base64,{encoded}">'
                             f"<figcaption>{html.escape(section['caption'])} "
                             f"({name})</figcaption></figure>")
            elif section["kind"] == "table":
                parts.append(section["table"].to_html(index=False, float_format="%.4g",
                                                      na_rep="", border=0))
                if section["caption"]:
                    parts.append(f"<p class=caption>{html.escape(section['caption'])}</p>")
            else:
                parts.append(f"<pre>{html.escape(json.dumps(section['data'], indent=2))}</pre>")
        document = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
            "img{max-width:100%}table{border-collapse:collapse;font-size:0.85em}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
            "figcaption,.caption{color:#555;font-size:0.9em}pre{background:#f6f6f6;padding:1em}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")
        path = directory / "report.html"
        with atomic_path(path) as tmp:
            tmp.write_text(document, encoding="utf-8")
        return path
