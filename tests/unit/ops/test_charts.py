"""The dashboard's charts as SVG: rates between their threshold lines, gaps for days with
nothing sent, column heights, escaped text (the dashboard drawing them from known rows:
tests/integration/test_admin_dashboard.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from newsletter.ops import charts
from newsletter.ops.charts import Bar, Point, Threshold

SVG = "{http://www.w3.org/2000/svg}"


def marks(svg: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [e for e in svg.iter(f"{SVG}{tag}") if css_class in e.attrib.get("class", "").split()]


def test_a_complaint_rate_of_two_per_thousand_plots_between_the_lines() -> None:
    svg = ET.fromstring(
        charts.rate_chart(
            title="Complaints",
            points=[Point("1 Nov", 0.002), Point("2 Nov", None), Point("3 Nov", 0.0005)],
            thresholds=[Threshold(0.001, "0.1%"), Threshold(0.003, "0.3%", "bad")],
            x_label="Day",
            y_label="Rate",
        )
    )
    lines = {
        float(t.attrib["data-value"]): float(t.attrib["y1"])
        for t in marks(svg, "line", "threshold")
    }
    points = {
        float(p.attrib["data-value"]): float(p.attrib["cy"]) for p in marks(svg, "circle", "point")
    }
    assert lines[0.003] < points[0.002] < lines[0.001]
    assert points[0.0005] > lines[0.001]
    # The day with nothing sent is a gap: no point, and no line drawn across it.
    assert len(points) == 2
    assert svg.findall(f"{SVG}polyline") == []
    assert svg.attrib["aria-label"] == "Complaints"


def test_a_rate_above_every_threshold_stays_on_the_chart() -> None:
    svg = ET.fromstring(
        charts.rate_chart(
            title="Bounces",
            points=[Point("1 Nov", 0.5), Point("2 Nov", 0.25)],
            thresholds=[Threshold(0.02, "2%")],
            x_label="Day",
            y_label="Rate",
        )
    )
    (top_point, _) = sorted(float(p.attrib["cy"]) for p in marks(svg, "circle", "point"))
    assert top_point >= charts.TOP
    assert len(svg.findall(f"{SVG}polyline")) == 1


def test_column_heights_follow_the_values() -> None:
    svg = ET.fromstring(
        charts.column_chart(
            title="Sent",
            bars=[Bar("a", 0), Bar("b", 5, tick="06:00"), Bar("c", 10)],
            x_label="Hour",
            y_label="Messages",
        )
    )
    heights = [float(b.attrib["height"]) for b in marks(svg, "rect", "bar")]
    assert heights[0] == 0 and heights[2] == pytest.approx(2 * heights[1], abs=0.2)
    assert "06:00" in [t.text for t in svg.iter(f"{SVG}text")]


def test_an_unknown_queue_depth_says_so() -> None:
    svg = ET.fromstring(
        charts.bar_chart(
            title="Queue", bars=[Bar("ready", None), Bar("queued", 3)], x_label="Messages"
        )
    )
    assert [b.attrib["data-value"] for b in marks(svg, "rect", "bar")] == ["3"]
    assert [t.text for t in marks(svg, "text", "unknown")] == ["unknown"]


def test_hostile_text_in_a_chart_is_escaped() -> None:
    hostile = "<script>alert(1)</script>\"'&"
    markup = charts.column_chart(
        title=hostile, bars=[Bar(hostile, 1, tick=hostile)], x_label=hostile, y_label=hostile
    )
    assert "<script>" not in markup
    svg = ET.fromstring(markup)  # still well-formed
    assert svg.attrib["aria-label"] == hostile
    assert svg.find(f"{SVG}title").text == hostile  # type: ignore[union-attr]


def test_percentages_read_as_people_write_them() -> None:
    assert charts.percent(0.001) == "0.1%"
    assert charts.percent(0.003) == "0.3%"
    assert charts.percent(0.0025) == "0.25%"
    assert charts.percent(0.02) == "2%"
    assert charts.percent(0) == "0%"
