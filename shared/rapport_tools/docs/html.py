"""Render the AsyncAPI document and the JSON Schemas as one static HTML page (no JavaScript, no
network): ``docs/events/index.html``, with the schemas beside it under ``schemas/events/`` (the
partner contract) and ``schemas/internal/`` (the clock tick). Served at the schema base URI
(``envelope.schema_base()``), ``docs/events/schemas/`` resolves every ``ce_dataschema``
(``<base>events/<type>.json``; docs/partners.md "Schema URIs")."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from ..contracts.export import SCHEMAS_ROOT, published_files

CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#fafbfc}
nav{position:fixed;top:0;bottom:0;left:0;width:300px;overflow:auto;padding:1em;background:#fff;border-right:1px solid #dde}
nav a{display:block;color:#2455a4;text-decoration:none;font-size:13px;padding:1px 0}nav .t{font-weight:600;margin-top:.6em}
main{margin-left:330px;padding:1em 2em 4em;max-width:1100px}
h1{margin-top:.2em}h2{border-bottom:2px solid #dde;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.6em;font-family:ui-monospace,Menlo,monospace;font-size:17px}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em;font-size:13.5px;background:#fff}
th,td{border:1px solid #dde;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f3f8}
code,pre{font-family:ui-monospace,Menlo,monospace;font-size:12.5px}pre{background:#f0f3f8;padding:.8em;overflow:auto}
.tag{display:inline-block;border-radius:3px;padding:0 6px;font-size:12px;margin-right:4px;background:#e4ecf7}
.tag.private{background:#f9dede}.tag.internal{background:#eee}.req{color:#b3261e;font-weight:600}
.muted{color:#667}.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:.5em 1em;margin:1em 0}
"""


class _Resolver:
    def __init__(self, root: dict[str, Any], prefix: str) -> None:
        self.root, self.prefix = root, prefix

    def resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        name = None
        while "$ref" in node:
            ref = node["$ref"]
            name = ref.rsplit("/", 1)[-1]
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node, name


def _constraints(n: dict[str, Any]) -> list[str]:
    out = []
    for key, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in n:
            out.append(f"{sym} {n[key]}")
    for key, text in (("minLength", "length ≥"), ("maxLength", "length ≤"), ("minItems", "items ≥"), ("maxItems", "items ≤")):
        if key in n:
            out.append(f"{text} {n[key]}")
    if "pattern" in n:
        out.append(f"pattern <code>{escape(n['pattern'])}</code>")
    return out


def _type_text(r: _Resolver, node: dict[str, Any], depth: int = 0) -> tuple[str, dict[str, Any] | None, str | None]:
    """(HTML description of the type, the object schema whose fields to list under it, its name)."""
    n, name = r.resolve(node)
    if "anyOf" in n or "oneOf" in n:
        parts, obj, obj_name = [], None, None
        for alt in n.get("anyOf") or n.get("oneOf"):
            text, o, on = _type_text(r, alt, depth)
            parts.append(text)
            obj, obj_name = (o, on) if o is not None else (obj, obj_name)
        return " | ".join(parts), obj, obj_name
    if "enum" in n:
        values = " · ".join(f"<code>{escape(json.dumps(v))}</code>" for v in n["enum"])
        return (f"<b>{escape(name)}</b>: " if name else "") + f"one of {values}", None, None
    if "const" in n:
        return f"<code>{escape(json.dumps(n['const']))}</code>", None, None
    t = n.get("type", "any")
    if t == "array":
        inner, obj, obj_name = _type_text(r, n.get("items", {}), depth + 1)
        extra = _constraints(n)
        return f"array of {inner}" + (f" ({', '.join(extra)})" if extra else ""), obj, obj_name
    if t == "object":
        if "properties" in n:
            return f"object <b>{escape(name or n.get('title', ''))}</b>", n, name
        ap = n.get("additionalProperties")
        if isinstance(ap, dict):
            inner, obj, obj_name = _type_text(r, ap, depth + 1)
            return f"map of string → {inner}", obj, obj_name
        return "object", None, None
    text = escape(str(t))
    if "format" in n:
        text += f" <span class=muted>({escape(n['format'])})</span>"
    extra = _constraints(n)
    if extra:
        text += " " + ", ".join(extra)
    return text, None, None


def field_rows(schema: dict[str, Any]) -> list[tuple[str, str, bool, str, str]]:
    """(path, type HTML, required, default, description) for every field, nested objects flattened."""
    r = _Resolver(schema, "")
    rows: list[tuple[str, str, bool, str, str]] = []

    def walk(obj: dict[str, Any], prefix: str, depth: int) -> None:
        required = set(obj.get("required", []))
        for name, prop in obj.get("properties", {}).items():
            resolved, _ = r.resolve(prop)
            text, sub, _ = _type_text(r, prop)
            default = json.dumps(resolved["default"]) if "default" in resolved else ""
            desc = resolved.get("description") or prop.get("description") or ""
            rows.append((prefix + name, text, name in required, default, desc))
            if sub is not None and depth < 6:
                is_array = "[]" if _is_array(r, prop) else ""
                is_map = "{}" if _is_map(r, prop) else ""
                walk(sub, f"{prefix}{name}{is_array}{is_map}.", depth + 1)

    walk(schema, "", 0)
    return rows


def _variants(r: _Resolver, node: dict[str, Any]) -> list[dict[str, Any]]:
    n, _ = r.resolve(node)
    if "anyOf" in n:
        return [r.resolve(a)[0] for a in n["anyOf"]]
    return [n]


def _is_array(r: _Resolver, node: dict[str, Any]) -> bool:
    return any(v.get("type") == "array" for v in _variants(r, node))


def _is_map(r: _Resolver, node: dict[str, Any]) -> bool:
    return any(v.get("type") == "object" and "properties" not in v and isinstance(v.get("additionalProperties"), dict)
               for v in _variants(r, node))


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{x}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _tags(obj: dict[str, Any]) -> str:
    return "".join(f'<span class="tag {escape(t["name"])}">{escape(t["name"])}</span>' for t in obj.get("tags", []))


def render_html(doc: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> str:
    """The page; ``schemas`` = event type → its published JSON Schema (with ``$defs``)."""
    channels, ops = doc["channels"], doc["operations"]
    messages = doc["components"]["messages"]
    consumers: dict[str, list[str]] = {}
    producers: dict[str, list[str]] = {}
    for op in ops.values():
        svc = next((t["name"].split(":", 1)[1] for t in op.get("tags", []) if t["name"].startswith("service:")), "?")
        for m in op.get("messages", []):
            mid = m["$ref"].rsplit("/", 1)[-1]
            (consumers if op["action"] == "receive" else producers).setdefault(mid, []).append(svc)

    nav = ['<nav><b>Rapport events</b><a href="#envelope">Envelope</a><a href="#rules">Rules for readers</a>'
           '<a href="#reading">Reading with any client</a>']
    out = []
    info = doc["info"]
    out.append(f"<h1>{escape(info['title'])} <span class=muted>v{escape(info['version'])}</span></h1>")
    out.append("<p>Generated from the code by <code>uv run python -m rapport_tools.docs</code> "
               "(AsyncAPI 3.0: <a href=\"../asyncapi.json\">asyncapi.json</a>). Do not edit.</p>")
    out.append("<p>" + escape(info["description"].split("\n\n")[0]) + "</p>")

    env = messages[min(t for t, s in schemas.items() if "x-kafka-key" in s)]["headers"]  # a partner message
    out.append('<h2 id="envelope">Envelope: CloudEvents 1.0, Kafka binary mode</h2>')
    out.append("<p>The record <b>value</b> is the event's <code>data</code> as compact UTF-8 JSON; the "
               "<b>key</b> is the episode id (UTF-8), so every event of an episode is in order on one partition; "
               "the attributes are <b>headers</b>:</p>")
    rows = []
    for name, prop in env["properties"].items():
        req = '<span class="req">required</span>' if name in env["required"] else "when present"
        value = "<i>per message</i>" if name in ("ce_type", "ce_source", "ce_dataschema") else (
            f"<code>{escape(prop['const'])}</code>" if "const" in prop else escape(prop.get("format", "string")))
        rows.append([f"<code>{escape(name)}</code>", req, value, escape(prop.get("description", ""))])
    out.append(_table(["header", "", "value", "meaning"], rows))

    out.append('<h2 id="rules">Rules for readers</h2><ul>'
               "<li>Deduplicate by <code>ce_id</code>: a record may be delivered more than once (relay crash, rebalance, replay).</li>"
               "<li>Select the schema by <code>ce_type</code>; ignore types you do not know (new types are added without notice).</li>"
               "<li>Ignore fields you do not know, and tolerate enum codes you do not know: compatible additions "
               "(new optional fields, new codes) come without a new version.</li>"
               "<li>A breaking change comes as a new type version (<code>.v2</code>) published beside the old one "
               "for a deprecation period. A CI check (<code>python -m rapport_tools.contracts.compat</code>) "
               "enforces this against the published baseline.</li>"
               "<li>Shared topics carry pseudonymous ids and coded facts only: no names, contact details, birth dates or free text.</li>"
               "</ul>")
    out.append('<h2 id="reading">Reading with any client</h2>'
               "<pre>kcat -b localhost:9092 -t rapport.course -C -o beginning -e -q -f 'key=%k p=%p o=%o\\n%h\\n%s\\n\\n'\n\n"
               "kcat -b localhost:9092 -t rapport.course -C -o beginning -e -q -J |\n"
               "  jq -c '(.headers | . as $h | [range(0; length; 2)] | map({($h[.]): $h[.+1]}) | add) as $h\n"
               "         | {key, type: $h.ce_type, id: $h.ce_id, schema: $h.ce_dataschema}'</pre>"
               "<p>(kcat 1.7's <code>%h</code> prints all headers; it has no per-header token.)</p>"
               "<p>A complete consumer in plain aiokafka that validates every record against these schemas: "
               "<code>examples/partner_consumer/</code>. More in <code>docs/partners.md</code>.</p>")

    for cid, ch in channels.items():
        kafka = ch.get("bindings", {}).get("kafka", {})
        nav.append(f'<a class="t" href="#ch-{escape(cid)}">{escape(ch["address"])}</a>')
        out.append(f'<h2 id="ch-{escape(cid)}"><code>{escape(ch["address"])}</code> — {escape(ch.get("title", ""))} {_tags(ch)}</h2>')
        out.append(f"<p>{escape(ch.get('description', ''))}</p>")
        facts = []
        if kafka:
            facts.append(["partitions (default)", str(kafka.get("partitions", "—"))])
            facts.append(["cleanup.policy", ", ".join(kafka.get("topicConfiguration", {}).get("cleanup.policy", []))])
        for pname, p in ch.get("parameters", {}).items():
            facts.append([f"<code>{{{escape(pname)}}}</code>", " · ".join(f"<code>{escape(v)}</code>" for v in p.get("enum", []))])
        chan_ops = [(oid, o) for oid, o in ops.items() if o["channel"]["$ref"] == f"#/channels/{cid}"]
        for oid, o in chan_ops:
            facts.append([escape(o["action"]), escape(o.get("title", oid))])
        out.append(_table(["", ""], facts))
        for mid in ch.get("messages", {}):
            msg = messages[mid]
            nav.append(f'<a href="#msg-{escape(mid)}">{escape(mid)}</a>')
            out.append(f'<div class="card"><h3 id="msg-{escape(mid)}">{escape(msg["name"])}</h3>')
            out.append(f"<p>{escape(msg.get('summary', ''))}</p>")
            if msg.get("description"):
                out.append(f"<p>{escape(msg['description'])}</p>")
            if mid in schemas:
                schema = schemas[mid]
                used_by = ", ".join(consumers.get(mid, [])) or "—"
                out.append(f'<p>Schema: <a href="{escape(msg["x-json-schema"].removeprefix("events/"))}">'
                           f'<code>{escape(schema["$id"])}</code></a> · '
                           f'<code>ce_source</code> <code>{escape(msg["headers"]["properties"]["ce_source"]["const"])}</code> · '
                           f"consumed inside Rapport by: {escape(used_by)}</p>")
                rows = [[f"<code>{escape(p)}</code>", t, '<span class="req">yes</span>' if req else "",
                         f"<code>{escape(d)}</code>" if d else "", escape(desc)]
                        for p, t, req, d, desc in field_rows(schema)]
                out.append(_table(["field", "type", "required", "default", "description"], rows))
                for example in msg.get("examples", []):
                    out.append("<details><summary>Example record (generated from the model)</summary><pre>"
                               + escape(f"key: {example['headers'].get('ce_subject', '')}\n"
                                        + "".join(f"{k}: {v}\n" for k, v in example.get("headers", {}).items())
                                        + "\n" + json.dumps(example["payload"], indent=2))
                               + "</pre></details>")
            else:
                hdr = msg.get("headers", {})
                rows = [[f"<code>{escape(n)}</code>", '<span class="req">yes</span>' if n in hdr.get("required", []) else "",
                         escape(p.get("description", "") or (json.dumps(p["const"]) if "const" in p else ""))]
                        for n, p in hdr.get("properties", {}).items()]
                if rows:
                    out.append(_table(["header", "required", "meaning"], rows))
                payload = msg.get("payload", {})
                if payload.get("description"):
                    out.append(f"<p>Value: {escape(payload['description'])}</p>")
            out.append("</div>")
    nav.append("</nav>")
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">"
            f"<title>{escape(info['title'])}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(nav) + "\n<main>\n" + "\n".join(out) + "\n</main></body></html>\n")


def render_site(doc: dict[str, Any]) -> dict[str, str]:
    """relative path under docs/events/ → content: the page and every published schema."""
    files: dict[str, str] = {}
    schemas: dict[str, dict[str, Any]] = {}
    for path, text in published_files(SCHEMAS_ROOT).items():
        schema = json.loads(text)
        schemas[schema["x-cloudevents-type"]] = schema
        files[f"schemas/{path.relative_to(SCHEMAS_ROOT).as_posix()}"] = text
    files["index.html"] = render_html(doc, schemas)
    return files
