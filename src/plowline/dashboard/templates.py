# ruff: noqa: E501  (HTML templates: long lines read better whole)
"""The dashboard's Jinja2 templates and style sheet.

Kept in a module (a DictLoader) rather than in files so that they install with
the package as they are. The environment escapes every value (autoescape on),
so text from events (page titles, paths, campaign names) is shown as text.
"""

from __future__ import annotations

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{% block head %}{% endblock %}
<title>{{ heading }} · Plowline</title>
<link rel="stylesheet" href="{{ css_url }}">
<link rel="icon" href="data:,">
</head>
<body>
<header>
  <div class="brand">Plowline</div>
  <nav aria-label="Dashboard pages">
  {% for page in nav %}
    <a href="{{ page.url }}"{% if page.current %} aria-current="page"{% endif %}>{{ page.label }}</a>
  {% endfor %}
  </nav>
</header>
<form class="filters" method="get" action="">
  <label>From <input type="date" name="since" value="{{ form.since }}"></label>
  <label>To <input type="date" name="until" value="{{ form.until }}"></label>
  <label>App <select name="app">
    <option value="">All apps</option>
    {% for app in apps %}
    <option value="{{ app }}"{% if app == form.app %} selected{% endif %}>{{ app }}</option>
    {% endfor %}
    {% if form.app and form.app not in apps %}
    <option value="{{ form.app }}" selected>{{ form.app }} (no sessions)</option>
    {% endif %}
  </select></label>
  <button type="submit">Apply</button>
  <a class="reset" href="?">All time</a>
</form>
<main>
<h1>{{ heading }}</h1>
{% if scope %}<p class="scope">{{ scope }}</p>{% endif %}
{% if error %}<p class="error" role="alert">{{ error }}</p>{% else %}{% block main %}{% endblock %}{% endif %}
</main>
<footer>Figures as <code>plowline report</code> gives them{% if updated %}; {{ updated }}{% endif %}.</footer>
</body>
</html>
"""

MACROS = """{% macro cards(items) %}
<section class="cards">
{% for item in items %}
  <div class="card" data-metric="{{ item.key }}">
    <div class="label">{{ item.label }}</div>
    <div class="value">{{ item.value }}</div>
  </div>
{% endfor %}
</section>
{% endmacro %}

{% macro table(id, caption, columns, rows) %}
<section class="panel" id="{{ id }}">
<h2>{{ caption }}</h2>
{% if rows %}
<div class="scroll"><table data-table="{{ id }}">
<thead><tr>{% for col in columns %}<th scope="col" class="{{ col.kind }}">{{ col.label }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}
<tr>{% for col in columns %}<td data-col="{{ col.key }}" class="{{ col.kind }}">{{ row[col.key] | show }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
{% else %}<p class="none">Nothing in this range.</p>{% endif %}
</section>
{% endmacro %}

{% macro shares(id, caption, key, rows) %}
<section class="panel" id="{{ id }}">
<h2>{{ caption }}</h2>
{% if rows %}
{% set most = rows[0].sessions or 1 %}
<ul class="shares" data-table="{{ id }}">
{% for row in rows %}
  <li><span class="name" data-col="{{ key }}">{{ row[key] | show }}</span>
  <svg class="bar" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true"><rect width="{{ (100 * row.sessions / most) | round(1) }}" height="6"></rect></svg>
  <span class="num" data-col="sessions">{{ row.sessions | show }}</span></li>
{% endfor %}
</ul>
{% else %}<p class="none">Nothing in this range.</p>{% endif %}
</section>
{% endmacro %}

{% macro chart(id, c) %}
<section class="panel" id="{{ id }}">
<h2>{{ c.title }}</h2>
{% if c.empty %}<p class="none">Nothing in this range.</p>{% else %}
<svg class="chart" viewBox="0 0 {{ c.width }} {{ c.height }}" role="img" aria-label="{{ c.title }}">
  <line class="axis" x1="{{ c.left }}" y1="{{ c.baseline }}" x2="{{ c.width }}" y2="{{ c.baseline }}"></line>
  <line class="grid" x1="{{ c.left }}" y1="{{ c.top }}" x2="{{ c.width }}" y2="{{ c.top }}"></line>
  <text class="tick" x="{{ c.left - 4 }}" y="{{ c.top + 4 }}" text-anchor="end">{{ c.top_value | show }}</text>
  <text class="tick" x="{{ c.left - 4 }}" y="{{ c.baseline }}" text-anchor="end">0</text>
  {% for bar in c.bars %}
  <rect x="{{ bar.x }}" y="{{ bar.y }}" width="{{ bar.width }}" height="{{ bar.height }}"><title>{{ bar.label }}: {{ bar.value | show }} {{ c.unit_label }}{% if c.extra_label %}, {{ bar.extra | show }} {{ c.extra_label }}{% endif %}</title></rect>
  {% endfor %}
  {% for x, label, anchor in c.ticks %}
  <text class="tick" x="{{ x }}" y="{{ c.height - 6 }}" text-anchor="{{ anchor }}">{{ label }}</text>
  {% endfor %}
</svg>
<details><summary>As a table</summary>
<div class="scroll"><table data-table="{{ id }}">
<thead><tr><th scope="col" class="text">When</th><th scope="col" class="num">{{ c.unit_label | capitalize }}</th>{% if c.extra_label %}<th scope="col" class="num">{{ c.extra_label | capitalize }}</th>{% endif %}</tr></thead>
<tbody>
{% for bar in c.bars %}<tr><td data-col="bucket">{{ bar.label }}</td><td class="num" data-col="value">{{ bar.value | show }}</td>{% if c.extra_label %}<td class="num" data-col="extra">{{ bar.extra | show }}</td>{% endif %}</tr>
{% endfor %}
</tbody></table></div>
</details>
{% endif %}
</section>
{% endmacro %}
"""

OVERVIEW = """{% extends "base.html" %}{% import "macros.html" as m %}
{% block main %}
{{ m.cards(cards) }}
{{ m.chart("over-time", chart) }}
{% endblock %}
"""

TABLES = """{% extends "base.html" %}{% import "macros.html" as m %}
{% block main %}
{% if cards %}{{ m.cards(cards) }}{% endif %}
{% for share in shares %}{{ m.shares(share.id, share.caption, share.key, share.rows) }}{% endfor %}
{% for t in tables %}{{ m.table(t.id, t.caption, t.columns, t.rows) }}{% endfor %}
{% endblock %}
"""

LIVE = """{% extends "base.html" %}{% import "macros.html" as m %}
{% block head %}<meta http-equiv="refresh" content="30">{% endblock %}
{% block main %}
{{ m.cards(cards) }}
{{ m.chart("per-minute", chart) }}
{% for t in tables %}{{ m.table(t.id, t.caption, t.columns, t.rows) }}{% endfor %}
{% endblock %}
"""

TEMPLATES = {
    "base.html": BASE,
    "macros.html": MACROS,
    "overview.html": OVERVIEW,
    "tables.html": TABLES,
    "live.html": LIVE,
}

CSS = """
:root { --fg: #1d2430; --muted: #5b6573; --line: #d8dde4; --accent: #2f6fb0;
  --bg: #f6f7f9; --card: #fff; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 15px/1.4 system-ui, sans-serif; color: var(--fg);
  background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem;
  padding: .6rem 1rem; background: #1d2430; color: #fff; }
.brand { font-weight: 700; }
nav { display: flex; flex-wrap: wrap; gap: .25rem .9rem; }
nav a { color: #cfe0f3; text-decoration: none; }
nav a[aria-current="page"] { color: #fff; text-decoration: underline; }
.filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end;
  padding: .6rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
.filters label { display: flex; flex-direction: column; font-size: .8rem;
  color: var(--muted); }
.filters input, .filters select, .filters button { font: inherit; max-width: 100%; }
main { padding: 0 1rem 1rem; max-width: 1100px; margin: 0 auto; }
h1 { font-size: 1.3rem; margin: 1rem 0 .2rem; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
.scope { color: var(--muted); margin: 0 0 .8rem; }
.error { color: #9b1c1c; background: #fdecec; padding: .6rem; border-radius: 4px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr));
  gap: .6rem; margin-bottom: 1rem; }
.card, .panel { background: var(--card); border: 1px solid var(--line);
  border-radius: 6px; padding: .6rem .8rem; }
.panel { margin-bottom: 1rem; min-width: 0; }
.card .label { color: var(--muted); font-size: .8rem; }
.card .value { font-size: 1.35rem; font-weight: 600; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid var(--line);
  text-align: left; vertical-align: top; }
td.text { overflow-wrap: anywhere; min-width: 6rem; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.chart { width: 100%; height: auto; display: block; }
.chart rect { fill: var(--accent); }
.chart .axis, .chart .grid { stroke: var(--line); }
.chart .tick { font-size: 11px; fill: var(--muted); }
.shares { list-style: none; padding: 0; margin: 0; }
.shares li { display: grid; grid-template-columns: minmax(0, 10rem) 1fr auto;
  gap: .5rem; align-items: center; padding: .15rem 0; }
.shares .name { overflow-wrap: anywhere; }
.shares .bar { width: 100%; height: .6rem; }
.shares .bar rect { fill: var(--accent); }
.none { color: var(--muted); }
details summary { cursor: pointer; color: var(--muted); font-size: .85rem; }
footer { color: var(--muted); font-size: .8rem; padding: 0 1rem 1rem;
  text-align: center; }
"""
