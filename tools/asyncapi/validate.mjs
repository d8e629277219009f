// Validate an AsyncAPI document with the official parser (@asyncapi/parser: the schema of the
// AsyncAPI version plus its Spectral ruleset), as partners' tools will read it.
//
//   node tools/asyncapi/validate.mjs docs/asyncapi.json [--json]
//
// Prints one line per diagnostic ("error|warning|info|hint <code> <path>: <message>") and a summary;
// --json prints {"errors": n, "warnings": n, "infos": n, "hints": n, "diagnostics": [...]} instead.
// Exit status: 0 no error, 1 errors (or the document could not be parsed), 2 usage.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Parser } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'info', 'hint']; // Spectral's DiagnosticSeverity 0..3

const args = process.argv.slice(2);
const json = args.includes('--json');
const files = args.filter((a) => a !== '--json');
if (files.length !== 1) {
  console.error('usage: node validate.mjs <asyncapi.json> [--json]');
  process.exit(2);
}
const path = resolve(files[0]);
let text;
try {
  text = await readFile(path, 'utf8');
} catch (err) {
  console.error(`${path}: ${err.message}`);
  process.exit(2);
}

const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source: path });
const found = diagnostics.map((d) => ({
  severity: SEVERITY[d.severity] ?? String(d.severity),
  code: String(d.code),
  path: (d.path || []).join('/'),
  message: d.message,
}));
const count = (s) => found.filter((d) => d.severity === s).length;
const summary = { errors: count('error'), warnings: count('warning'), infos: count('info'), hints: count('hint') };
if (!document && summary.errors === 0) summary.errors = 1; // not parsed at all: never report success

if (json) {
  console.log(JSON.stringify({ ...summary, parsed: Boolean(document), diagnostics: found }, null, 2));
} else {
  for (const d of found) console.log(`${d.severity} ${d.code} ${d.path || '(root)'}: ${d.message}`);
  const what = document ? `AsyncAPI ${document.version()}, ${document.channels().length} channels, ` +
    `${document.operations().length} operations, ${document.messages().length} messages` : 'not parsed';
  console.log(`${files[0]}: ${what}; ${summary.errors} error(s), ${summary.warnings} warning(s), ` +
    `${summary.infos} info(s), ${summary.hints} hint(s)`);
}
process.exit(summary.errors ? 1 : 0);
