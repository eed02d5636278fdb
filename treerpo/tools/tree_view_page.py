"""The self-contained HTML page of `treerpo view`: data, style and script in one file, no network.

The page holds every tree's view record (treerpo.tools.tree_view) as JSON and draws one tree at a
time, so a dump of thousands of trees opens as fast as one of a few: the list on the left is
paged (200 rows a page, filter by step or prompt), and only the selected tree is built into the
DOM. The address fragment picks what is drawn: `#t=K` the tree of index K, `#all` every tree of
the current filter (for printing, and for tests that read the DOM of a small dump).

Each node is a box: its segment text (cut to one line; hover for all of it, click to unfold),
token count, stop reason, V(node), advantage (TreePO's nodes above the leaves: Ā, the mean A_i of
their leaves) and group; leaves add reward and the extracted
answer. The box colour is the advantage on a diverging scale (blue negative, red positive,
white zero; the legend gives the end value, the largest |A| in the dump). Nodes of a pruned,
single or zero-variance group are hatched and tagged. When the first tree is drawn the page
writes the time since navigation start into `body[data-first-render-ms]`.
"""

from __future__ import annotations

import json

STYLE = r"""
body{font:13px/1.35 system-ui,sans-serif;margin:0;display:flex;height:100vh;color:#222}
#side{width:300px;border-right:1px solid #ccc;display:flex;flex-direction:column}
#side input{margin:6px;padding:4px}
#list{overflow:auto;flex:1}
#list div{padding:3px 6px;cursor:pointer;border-bottom:1px solid #eee;white-space:nowrap;overflow:hidden}
#list div.sel{background:#ffe9a8}
#pager{padding:4px 6px;border-top:1px solid #ccc}
#main{flex:1;overflow:auto;padding:8px 12px}
.tree{margin-bottom:24px}
.summary{background:#f3f3f3;padding:4px 8px;border-radius:4px;margin:4px 0}
.prompt{font-family:monospace;white-space:pre-wrap;color:#555;margin:4px 0}
.sub{display:flex;align-items:center}
.kids{display:flex;flex-direction:column;margin-left:14px}
.kids>.sub{position:relative;padding:2px 0 2px 14px}
.kids>.sub:before{content:"";position:absolute;left:0;top:50%;width:14px;border-top:2px solid #999}
.kids>.sub:after{content:"";position:absolute;left:0;top:0;bottom:0;border-left:2px solid #999}
.kids>.sub:first-child:after{top:50%}.kids>.sub:last-child:after{bottom:50%}
.kids>.sub:only-child:after{display:none}
.node{border:1px solid #777;border-radius:4px;padding:2px 5px;min-width:150px;max-width:260px;cursor:pointer}
.node .txt{font-family:monospace;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;background:#fff8;padding:0 2px}
.node.open{max-width:520px}.node.open .txt{white-space:pre-wrap}
.node .num{font-size:11px}
.node.dead{background-image:repeating-linear-gradient(45deg,transparent 0 6px,#0001 6px 8px)}
.tag{font-size:10px;border-radius:3px;padding:0 3px;margin-left:3px;background:#444;color:#fff}
.rootbox{border:1px dashed #777;border-radius:4px;padding:2px 6px;background:#fafafa}
#legend{display:flex;align-items:center;gap:6px;margin:4px 0}
#legend .bar{width:160px;height:10px;background:linear-gradient(90deg,#2166ac,#fff,#b2182b);border:1px solid #999}
"""

SCRIPT = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const T = D.trees, S = D.scale, PAGE = 200;
let filtered = T, page = 0;
const $ = id => document.getElementById(id);
const f = (x, d=2) => x === null || x === undefined ? '–' : (x > 0 && d > 0 ? '+' : '') + x.toFixed(d);
const g = (x, d=2) => x === null || x === undefined ? '–' : x.toFixed(d);
function color(a){
  if (a === null || a === undefined) return '#eee';
  const t = Math.max(-1, Math.min(1, a / S)), w = 1 - Math.abs(t);
  const [r, gg, b] = t > 0 ? [178, 24, 43] : [33, 102, 172];
  return `rgb(${Math.round(r + (255 - r) * w)},${Math.round(gg + (255 - gg) * w)},${Math.round(b + (255 - b) * w)})`;
}
function el(tag, cls, text){ const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
function groupInfo(t, n){
  if (t.method === 'treerpo') { const gr = t.groups[n.group]; return {label: 'g' + n.group, state: gr.state, title: `step-level group g${n.group}: the ${gr.size} children of node ${n.group}, std ${g(gr.std, 3)}, ${gr.state}`}; }
  if (n.groups) return {label: n.groups.map(x => 'G' + x).join(' '), state: null, title: 'TreePO groups of this leaf: ' + n.groups.map(x => `G${x} (${t.groups[x].size} leaves, mean R ${g(t.groups[x].mean)}, ${t.groups[x].state})`).join('; ')};
  if (n.subgroup) { const gr = t.groups[n.id]; return {label: 'G' + n.id, state: gr.state, title: `TreePO subgroup G${n.id}: ${gr.size} leaves below, mean R ${g(gr.mean)}, ${gr.state}`}; }
  return {label: '', state: null, title: ''};
}
function nodeBox(t, n){
  const b = el('div', 'node'); b.dataset.tree = t.index; b.dataset.id = n.id; b.dataset.tokens = n.tokens; b.dataset.value = n.value; b.dataset.adv = n.adv;
  const below = n.adv === null && n.adv_below !== undefined;
  b.style.background = color(below ? n.adv_below : n.adv);
  const gi = groupInfo(t, n);
  const head = el('div', 'num'); head.append(el('b', null, '#' + n.id), ` ${n.tokens} tok`);
  if (n.stop) head.append(el('span', 'tag', n.stop));
  if (gi.state && gi.state !== 'kept') { head.append(el('span', 'tag', gi.state)); b.classList.add('dead'); }
  const txt = el('div', 'txt', n.text.replace(/\n/g, '⏎\n')); txt.title = n.text;
  const nums = el('div', 'num'); nums.append(el('span', 'v', 'V ' + g(n.value)), ' · ');
  if (below) { const a = el('span', 'a', 'Ā ' + f(n.adv_below, 3)); a.title = 'mean A_i of the leaves below (TreePO)'; nums.append(a); }
  else nums.append(el('span', 'a', 'A ' + f(n.adv, 3)));
  if (gi.label) { const s = el('span', 'grp', ' · ' + gi.label); s.title = gi.title; nums.append(s); }
  b.append(head, txt, nums);
  if ('reward' in n) { const l = el('div', 'num leaf'); l.append(el('span', 'r', 'R ' + g(n.reward)), ' · ans ', el('span', 'ans', n.answer === null ? '(none)' : n.answer)); b.append(l); }
  b.onclick = () => b.classList.toggle('open');
  return b;
}
function drawTree(t){
  const w = el('div', 'tree'); w.dataset.index = t.index; w.dataset.nodes = t.nodes.length;
  const s = t.summary;
  w.append(el('h3', null, `tree ${t.index} · step ${t.step} · ${t.method} · prompt ${t.uid}`));
  w.append(el('div', 'summary', `leaves ${s.leaves} · depth ${s.depth} · tokens ${s.tokens} vs flat ${s.flat_tokens}` +
    ` (${(s.flat_tokens / Math.max(s.tokens, 1)).toFixed(2)}x) · accuracy ${s.accuracy === null ? '–' : (100 * s.accuracy).toFixed(0) + '%'}` +
    ` · groups ${s.groups}, zero-variance ${s.zero_variance_groups}` + (s.pruned_groups === null ? '' : `, without signal ${s.pruned_groups}`)));
  w.append(el('div', 'prompt', t.prompt));
  const kids = {};
  for (const n of t.nodes) (kids[n.parent === null ? t.root : n.parent] ||= []).push(n);
  function sub(box, id){
    const s = el('div', 'sub'); s.append(box);
    if (kids[id]) { const k = el('div', 'kids'); for (const c of kids[id]) k.append(sub(nodeBox(t, c), c.id)); s.append(k); }
    return s;
  }
  w.append(sub(el('div', 'rootbox', t.question || 'prompt'), t.root));
  return w;
}
function show(){
  const m = $('main'); m.replaceChildren($('legendtpl').content.cloneNode(true));
  const h = location.hash;
  if (h === '#all') { for (const t of filtered) m.append(drawTree(t)); }
  else { const k = parseInt((h.match(/^#t=(\d+)$/) || [])[1] ?? (filtered[0] ? filtered[0].index : -1)); if (T[k]) m.append(drawTree(T[k])); }
  listPage();
  if (!document.body.dataset.firstRenderMs) document.body.dataset.firstRenderMs = performance.now().toFixed(0);
}
function listPage(){
  const l = $('list'); l.replaceChildren();
  const cur = (location.hash.match(/^#t=(\d+)$/) || [])[1];
  for (const t of filtered.slice(page * PAGE, (page + 1) * PAGE)) {
    const d = el('div', String(t.index) === cur ? 'sel' : '', `${t.index} · s${t.step} · acc ${t.summary.accuracy === null ? '–' : (100 * t.summary.accuracy).toFixed(0) + '%'} · ${t.question.slice(0, 40)}`);
    d.title = t.uid; d.onclick = () => { location.hash = 't=' + t.index; }; l.append(d);
  }
  $('pageinfo').textContent = `${filtered.length ? page * PAGE + 1 : 0}-${Math.min((page + 1) * PAGE, filtered.length)} of ${filtered.length}`;
}
$('filter').oninput = e => { const q = e.target.value.trim(); page = 0;
  filtered = !q ? T : T.filter(t => (/^s\d+$/.test(q) ? 's' + t.step === q : (t.uid + ' ' + t.question).includes(q))); listPage(); };
$('prev').onclick = () => { if (page > 0) { page--; listPage(); } };
$('next').onclick = () => { if ((page + 1) * PAGE < filtered.length) { page++; listPage(); } };
window.onhashchange = show;
show();
"""


def page(trees: list[dict], scale: float, title: str) -> str:
    """The whole HTML document for these view records."""
    data = json.dumps({"trees": trees, "scale": scale}, ensure_ascii=False).replace("</", "<\\/")
    esc = title.replace("&", "&amp;").replace("<", "&lt;")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc}</title><style>{STYLE}</style></head>
<body>
<div id="side"><input id="filter" placeholder="filter: s12 (a step) or prompt text / uid">
<div id="list"></div>
<div id="pager"><button id="prev">&lt;</button> <span id="pageinfo"></span> <button id="next">&gt;</button></div></div>
<div id="main"></div>
<template id="legendtpl"><div id="legend"><b>{esc}</b> · advantage <span>{-scale:.3g}</span><span class="bar"></span>
<span>+{scale:.3g}</span> · hatched: group without signal (pruned, single child, zero-variance) ·
click a node for its full text</div></template>
<script id="data" type="application/json">{data}</script>
<script>{SCRIPT}</script>
</body></html>
"""
