// Parse every ```mermaid block of the given Markdown files with Mermaid's own parser.
// Usage: node docs/check_diagrams.mjs FILE.md...   (run docs/check_diagrams.sh, which installs mermaid first)
// Prints one line per diagram and exits 1 if any fails to parse, as GitHub would show an error box.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

// Mermaid sanitises labels with DOMPurify, which needs a DOM: give it jsdom's before loading mermaid.
const { window } = new JSDOM('');
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import('mermaid');
const { version } = JSON.parse(readFileSync(new URL('node_modules/mermaid/package.json', import.meta.url), 'utf8'));

/** Yield {line, source} for each fenced ```mermaid block (line is 1-based, of the opening fence). */
function* mermaidBlocks(text) {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^(\s*)(`{3,}|~{3,})\s*mermaid\s*$/);
    if (!open) continue;
    const fence = open[2];
    const body = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].trim().startsWith(fence)) body.push(lines[j++]);
    yield { line: i + 1, source: body.join('\n') };
    i = j;
  }
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node check_diagrams.mjs FILE.md...');
  process.exit(2);
}
let checked = 0;
let failed = 0;
for (const file of files) {
  for (const { line, source } of mermaidBlocks(readFileSync(file, 'utf8'))) {
    checked++;
    try {
      const result = await mermaid.parse(source);
      console.log(`ok    ${file}:${line}  ${result.diagramType}`);
    } catch (error) {
      failed++;
      console.log(`FAIL  ${file}:${line}\n${String(error.message ?? error).replace(/^/gm, '      ')}`);
    }
  }
}
console.log(`${checked} diagram(s) checked, ${failed} failed (mermaid ${version})`);
process.exit(failed ? 1 : 0);
